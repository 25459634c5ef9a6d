"""--optimizer auto: YOLOR's recipe for long runs, AdamW with a step per batch for short ones; what the
user gives wins; the header line says what was chosen."""

from __future__ import annotations

import dataclasses

import pytest

from yolor_cli.engine.config import load_hyp
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.train.recipe import AUTO_SGD_MIN_ITERATIONS, Recipe, decide_recipe, fitted_lr


def _auto(**run: object) -> Recipe:
    values = {"epochs": 30, "train_images": 168, "batch_size": 16, "nc": 5, "hyp": load_hyp(), **run}
    return decide_recipe("auto", **values)  # type: ignore[arg-type]


def test_a_short_run_gets_adamw_with_a_step_per_batch_and_a_short_warmup() -> None:
    recipe = _auto()  # the run: 168 photographs, 5 classes, batch 16, 30 epochs
    assert recipe.iterations == 330 and recipe.auto
    assert (recipe.optimizer, recipe.lr0, recipe.momentum, recipe.nominal_batch_size) == ("adamw", 0.001111, 0.9, 16)
    assert recipe.warmup_bias_lr == 0.0
    assert recipe.warmup_iterations == 10  # 3 % of 330, shorter than the hyp's 3 epochs (33)
    assert recipe.header() == "optimizer auto → AdamW lr 0.00111, no accumulation: 330 iterations, warmup 10"
    assert "330 iterations < 10,000" in recipe.reason


def test_the_learning_rate_is_fit_to_the_class_count() -> None:
    assert (fitted_lr(1), fitted_lr(3), fitted_lr(80)) == (0.002, 0.001429, 0.000119)


def test_a_long_run_keeps_yolors_recipe() -> None:
    recipe = _auto(epochs=300, train_images=340, batch_size=8, nc=3)  # the demo data for 300 epochs
    assert recipe.iterations == 12_900
    assert (recipe.optimizer, recipe.lr0, recipe.momentum, recipe.nominal_batch_size) == ("sgd", 0.01, 0.937, 64)
    assert recipe.warmup_iterations == 129 and recipe.warmup_bias_lr == load_hyp().warmup_bias_lr  # 3 epochs of 43
    assert recipe.header() == (
        "optimizer auto → SGD lr 0.01, nominal batch 64 (YOLOR recipe): 12,900 iterations, warmup 129"
    )


def test_the_threshold_counts_batches() -> None:
    assert _auto(epochs=AUTO_SGD_MIN_ITERATIONS, train_images=16).optimizer == "sgd"  # exactly 10,000
    assert _auto(epochs=AUTO_SGD_MIN_ITERATIONS - 1, train_images=16).optimizer == "adamw"
    assert _auto(epochs=1, train_images=17, batch_size=16).iterations == 2  # a last, partial batch counts


def test_what_the_user_gives_wins_over_auto() -> None:
    hyp = dataclasses.replace(load_hyp(), lr0=0.003, momentum=0.85, warmup_bias_lr=0.05)
    own_hyp = _auto(hyp=hyp, hyp_given=True)  # a short run: the hyp's values are SGD's, AdamW keeps its own
    assert (own_hyp.optimizer, own_hyp.lr0, own_hyp.momentum, own_hyp.warmup_bias_lr) == ("adamw", 0.001111, 0.9, 0.0)
    assert "the --hyp lr0 and momentum are for SGD" in own_hyp.reason
    assert _auto(hyp=hyp, hyp_given=False).lr0 == 0.001111
    long_own = _auto(epochs=3000, hyp=hyp, hyp_given=True)
    assert (long_own.optimizer, long_own.lr0, long_own.momentum) == ("sgd", 0.003, 0.85)
    accumulated = _auto(nominal_batch_size=64)
    assert accumulated.nominal_batch_size == 64 and "nominal batch 64" in accumulated.header()
    for name in ("sgd", "adam", "adamw"):  # an explicit optimizer: the recipe of earlier versions
        explicit = decide_recipe(name, epochs=30, train_images=168, batch_size=16, nc=5, hyp=hyp)
        assert (explicit.optimizer, explicit.lr0, explicit.nominal_batch_size, explicit.auto) == (
            name,
            0.003,
            64,
            False,
        )
        assert explicit.warmup_iterations == 100  # YOLOR's: 3 epochs (33) raised to at least 100
    assert decide_recipe(
        "adam", epochs=10, train_images=340, batch_size=8, nc=3, hyp=load_hyp("demo"), nominal_batch_size=8
    ).header() == (
        "optimizer Adam lr 0.002, no accumulation: 430 iterations, warmup 129"  # the demo's measured recipe
    )
    with pytest.raises(YolorError, match="unknown optimizer 'rmsprop'"):
        decide_recipe("rmsprop", epochs=1, train_images=1, batch_size=1, nc=1, hyp=hyp)


def test_a_recipe_round_trips_through_a_dict_and_sets_the_hyp() -> None:
    recipe = _auto()
    assert Recipe.from_dict(dataclasses.asdict(recipe)) == recipe
    hyp = recipe.applied_to(load_hyp())
    assert (hyp.lr0, hyp.momentum, hyp.warmup_bias_lr, hyp.scale) == (0.001111, 0.9, 0.0, load_hyp().scale)


def test_the_command_line_takes_adam_as_an_alias_and_refuses_a_contradiction() -> None:
    from tests.test_cli import invoke

    refused = invoke("train", "--data", "data.yaml", "--adam", "--optimizer", "sgd")
    assert refused.exit_code == 1 and "--adam means --optimizer adam, not sgd" in " ".join(refused.stderr.split())
    unknown = invoke("train", "--optimizer", "rmsprop")
    assert unknown.exit_code == 2 and "rmsprop" in unknown.stderr
