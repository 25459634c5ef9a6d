"""--optimizer auto: YOLOR's recipe for long runs, AdamW with a step per batch for short ones; what the
user gives wins; the header line says what was chosen."""

from __future__ import annotations

import dataclasses

import pytest

from yolor_cli.engine.config import load_hyp
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.train.recipe import AUTO_ADAMW_LR, AUTO_SGD_MIN_ITERATIONS, Recipe, decide_recipe


def _auto(**run: object) -> Recipe:
    values = {"epochs": 30, "train_images": 168, "batch_size": 16, "hyp": load_hyp(), **run}
    return decide_recipe("auto", **values)  # type: ignore[arg-type]


def test_a_short_run_gets_adamw_at_the_measured_lr_with_a_step_per_batch() -> None:
    recipe = _auto()  # the run: 168 photographs, batch 16, 30 epochs
    assert recipe.iterations == 330 and recipe.auto
    assert (recipe.optimizer, recipe.lr0, recipe.momentum, recipe.nominal_batch_size) == ("adamw", 0.002, 0.937, 16)
    assert recipe.warmup_bias_lr == load_hyp().warmup_bias_lr
    assert recipe.warmup_iterations == 100  # YOLOR's: 3 epochs of 11 batches, at least 100, at most half the run
    assert recipe.scale == 0.5  # milder scale augmentation for a short run
    assert recipe.header() == "optimizer auto → AdamW lr 0.002, no accumulation, scale 0.5: 330 iterations, warmup 100"
    assert "330 iterations < 10,000" in recipe.reason


def test_a_very_short_run_warms_up_for_at_most_half_of_it() -> None:
    assert _auto(epochs=4, train_images=12, batch_size=4).warmup_iterations == 6  # 12 batches


def test_a_long_run_keeps_yolors_recipe() -> None:
    recipe = _auto(epochs=300, train_images=340, batch_size=8)  # the demo data for 300 epochs
    assert recipe.iterations == 12_900
    assert (recipe.optimizer, recipe.lr0, recipe.momentum, recipe.nominal_batch_size) == ("sgd", 0.01, 0.937, 64)
    assert recipe.warmup_iterations == 129 and recipe.warmup_bias_lr == load_hyp().warmup_bias_lr  # 3 epochs of 43
    assert recipe.scale is None  # YOLOR's augmentation for a long run
    assert recipe.header() == (
        "optimizer auto → SGD lr 0.01, nominal batch 64 (YOLOR recipe): 12,900 iterations, warmup 129"
    )


def test_the_threshold_counts_batches() -> None:
    assert _auto(epochs=AUTO_SGD_MIN_ITERATIONS, train_images=16).optimizer == "sgd"  # exactly 10,000
    assert _auto(epochs=AUTO_SGD_MIN_ITERATIONS - 1, train_images=16).optimizer == "adamw"
    assert _auto(epochs=1, train_images=17, batch_size=16).iterations == 2  # a last, partial batch counts


def test_what_the_user_gives_wins_over_auto() -> None:
    hyp = dataclasses.replace(load_hyp(), lr0=0.003, momentum=0.85, warmup_bias_lr=0.05)
    own_hyp = _auto(hyp=hyp, hyp_given=True)  # a short run: a hyp's lr0 is SGD's, AdamW keeps the measured one
    assert (own_hyp.optimizer, own_hyp.lr0, own_hyp.momentum, own_hyp.warmup_bias_lr) == (
        "adamw",
        AUTO_ADAMW_LR,
        0.85,
        0.05,
    )
    assert "the --hyp lr0 is for SGD" in own_hyp.reason
    assert own_hyp.scale is None and own_hyp.applied_to(hyp).scale == hyp.scale  # a --hyp keeps its augmentation
    long_own = _auto(epochs=3000, hyp=hyp, hyp_given=True)
    assert (long_own.optimizer, long_own.lr0, long_own.momentum) == ("sgd", 0.003, 0.85)
    accumulated = _auto(nominal_batch_size=64)
    assert accumulated.nominal_batch_size == 64 and "nominal batch 64" in accumulated.header()
    for name in ("sgd", "adam", "adamw"):  # an explicit optimizer: the recipe of earlier versions
        explicit = decide_recipe(name, epochs=30, train_images=168, batch_size=16, hyp=hyp)
        assert (explicit.optimizer, explicit.lr0, explicit.nominal_batch_size, explicit.auto) == (
            name,
            0.003,
            64,
            False,
        )
        assert explicit.warmup_iterations == 100  # YOLOR's: 3 epochs (33) raised to at least 100
    assert decide_recipe(
        "adam", epochs=10, train_images=340, batch_size=8, hyp=load_hyp("demo"), nominal_batch_size=8
    ).header() == (
        "optimizer Adam lr 0.002, no accumulation: 430 iterations, warmup 129"  # the demo's measured recipe
    )
    with pytest.raises(YolorError, match="unknown optimizer 'rmsprop'"):
        decide_recipe("rmsprop", epochs=1, train_images=1, batch_size=1, hyp=hyp)


def test_a_recipe_round_trips_through_a_dict_and_sets_the_hyp() -> None:
    recipe = _auto()
    assert Recipe.from_dict(dataclasses.asdict(recipe)) == recipe
    hyp = recipe.applied_to(load_hyp())
    assert (hyp.lr0, hyp.momentum, hyp.warmup_bias_lr, hyp.scale) == (0.002, 0.937, 0.1, 0.5)
    saved = {k: v for k, v in dataclasses.asdict(recipe).items() if k != "scale"}  # a recipe saved before scale
    assert Recipe.from_dict(saved).scale is None


def test_the_command_line_takes_adam_as_an_alias_and_refuses_a_contradiction() -> None:
    from tests.test_cli import invoke

    refused = invoke("train", "--data", "data.yaml", "--adam", "--optimizer", "sgd")
    assert refused.exit_code == 1 and "--adam means --optimizer adam, not sgd" in " ".join(refused.stderr.split())
    unknown = invoke("train", "--optimizer", "rmsprop")
    assert unknown.exit_code == 2 and "rmsprop" in unknown.stderr
