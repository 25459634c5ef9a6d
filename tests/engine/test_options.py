"""Each option declared once: a request field's declaration drives the command line and the checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.test_cli import invoke
from yolor_cli.engine.data.request import SynthRequest
from yolor_cli.engine.deploy.request import BenchmarkRequest, ExportRequest
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.request import EvalRequest
from yolor_cli.engine.model.request import InfoRequest
from yolor_cli.engine.options import (
    MAX_IMG_SIZE,
    MAX_SEED,
    REQUIRED,
    Request,
    given_options,
    img_size_option,
    option,
    seed_option,
)
from yolor_cli.engine.prune.request import AutoPruneRequest
from yolor_cli.engine.train.request import TrainRequest
from yolor_cli.options import request_command


@dataclass(frozen=True)
class ToyRequest(Request):
    path: Path = option(REQUIRED, "--path", help="A path.")
    size: int = img_size_option(64)
    ratio: float = option(0.5, "--ratio", min=0.0, max=1.0)
    kind: str = option("a", "--kind", choices=("a", "b"))
    sizes: tuple[int, ...] = option((), "--each", min=1)
    seed: int = seed_option()


def test_bounds_nan_and_choices_are_checked_when_a_request_is_built() -> None:
    assert ToyRequest(path=Path("x")).size == 64
    for changes, message in (
        ({"size": MAX_IMG_SIZE + 32}, f"--img-size {MAX_IMG_SIZE + 32} is above {MAX_IMG_SIZE}"),
        ({"size": 16}, "--img-size 16 is below 32"),
        ({"ratio": math.nan}, "--ratio nan is not a number"),
        ({"ratio": math.inf}, "--ratio inf is not finite"),
        ({"kind": "c"}, "--kind 'c' is not one of a, b"),
        ({"sizes": (3, 0)}, "--each 0 is below 1"),
        ({"seed": -1}, "--seed -1 is negative"),
        ({"seed": MAX_SEED + 1}, f"--seed {MAX_SEED + 1} is above {MAX_SEED}"),
    ):
        with pytest.raises(YolorError, match=message):
            ToyRequest(path=Path("x"), **changes)  # type: ignore[arg-type]


def test_given_options_are_those_that_differ_from_their_default() -> None:
    assert given_options(ToyRequest(path=Path("x"), ratio=0.25, kind="b")) == ["--ratio", "--kind"]


def test_a_command_is_built_from_the_request_fields() -> None:
    seen: list[tuple[ToyRequest, bool]] = []
    app = typer.Typer()

    @app.command()
    @request_command(ToyRequest)
    def toy(request: ToyRequest, loud: bool = typer.Option(False, "--loud")) -> None:
        seen.append((request, loud))

    @app.command()
    def other() -> None:  # two commands, so that the command's name is part of the call
        pass

    runner = CliRunner()
    result = runner.invoke(
        app, ["toy", "--path", "p", "--img-size", "128", "--each", "2", "--each", "3", "--kind", "b"]
    )
    assert result.exit_code == 0, result.output
    assert seen == [(ToyRequest(path=Path("p"), size=128, sizes=(2, 3), kind="b"), False)]
    assert runner.invoke(app, ["toy", "--path", "p", "--img-size", "99999"]).exit_code == 2  # click's usage error
    assert runner.invoke(app, ["toy", "--path", "p", "--kind", "c"]).exit_code == 2
    assert runner.invoke(app, ["toy", "--path", "p", "--ratio", "nan"]).exit_code != 0  # click or the request


# ---- #9: seeds are bounded once, for every command that has one, before any work ------------------


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seeds_outside_32_bits_are_refused_by_every_request(seed: int, tmp_path: Path) -> None:
    for build in (
        lambda: TrainRequest(seed=seed),
        lambda: SynthRequest(out=tmp_path / "synth", seed=seed),
        lambda: AutoPruneRequest(
            weights=Path("w.pt"), data=Path("d.yaml"), target_macs=0.5, project=tmp_path, seed=seed
        ),
    ):
        with pytest.raises(YolorError, match="--seed"):
            build()


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_cli_seeds_outside_32_bits_are_usage_errors_before_any_work(seed: str, tmp_path: Path) -> None:
    for args in (
        ("dataset", "synth", "--out", str(tmp_path / "synth"), "--images", "2"),
        ("train", "--data", str(tmp_path / "data.yaml"), "--project", str(tmp_path / "runs")),
        ("prune", "auto", "-w", str(tmp_path / "w.pt"), "--data", str(tmp_path / "d.yaml"), "--target-macs", "0.5",
         "--project", str(tmp_path / "auto")),
        ("dataset", "split", "--root", str(tmp_path)),
    ):  # fmt: skip
        result = invoke(*args, "--seed", seed)
        assert result.exit_code == 2 and "--seed" in result.output and "internal error" not in result.output, args
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was made


# ---- #10: sizes and batches have upper bounds, declared once ---------------------------------------


def test_sizes_and_batches_have_upper_bounds_in_every_request() -> None:
    for build in (
        lambda: EvalRequest(data=Path("d.yaml"), img_size=65536),
        lambda: BenchmarkRequest(weights=Path("w.pt"), data=Path("d.yaml"), batch=100000),
        lambda: ExportRequest(weights=Path("w.pt"), batch=100000),
        lambda: InfoRequest(img_size=99999999999),
        lambda: TrainRequest(img_size=(640, 65536)),
    ):
        with pytest.raises(YolorError, match="is above"):
            build()


def test_cli_sizes_and_batches_beyond_their_bounds_are_refused_before_any_work(tmp_path: Path) -> None:
    data, weights = str(tmp_path / "d.yaml"), str(tmp_path / "w.pt")
    for args in (
        ("eval", "--data", data, "--weights", weights, "--img-size", "65536"),
        ("benchmark", "-w", weights, "--data", data, "--batch", "100000"),
        ("info", "--cfg", "yolor_csp_tiny", "--img-size", "99999999999"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2 and "internal error" not in result.output, result.output
        assert "100000000000" not in result.output  # no suggestion beyond the bound
        assert str(MAX_IMG_SIZE) in result.output or "1024" in result.output


@pytest.mark.parametrize("name", ["../../x", "", ".", "a/b"])
def test_run_names_are_checked_when_every_request_with_a_name_is_built(name: str) -> None:
    """--name is declared once with its check, so `prune auto --name ../x` stops before its first
    evaluation instead of after it (survey defect 13)."""
    from yolor_cli.engine.infer.request import DetectRequest
    from yolor_cli.engine.options import option_fields

    builds = {
        DetectRequest: {"source": "images", "weights": Path("w.pt")},
        EvalRequest: {"data": Path("d.yaml")},
        TrainRequest: {},
        AutoPruneRequest: {"weights": Path("w.pt"), "data": Path("d.yaml")},
    }
    for request_type, required in builds.items():
        assert any(field.name == "name" for field, _ in option_fields(request_type))
        with pytest.raises(YolorError, match="is not a folder name"):
            request_type(name=name, **required)


def test_prune_auto_refuses_a_bad_name_before_any_work(tmp_path: Path) -> None:
    result = invoke(
        "prune", "auto", "--weights", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "d.yaml"),
        "--name", "../x", "--project", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.exit_code == 1 and "--name '../x' is not a folder name" in " ".join(result.stderr.split())
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


def test_cli_float_options_call_nan_not_a_number_and_keep_their_bounds() -> None:
    """click's float range told "nan" it should be >= 0 (--max-drop, --sparsity, --val); the request's
    own rule now answers on the command line too, still as a usage error."""
    for args, words in (
        (
            ("prune", "auto", "--weights", "w.pt", "--data", "d.yaml", "--max-drop", "nan"),
            "--max-drop nan is not a number",
        ),
        (("eval", "--data", "d.yaml", "--conf", "1.5"), "--conf 1.5 is above 1"),
        (("eval", "--data", "d.yaml", "--iou", "inf"), "--iou inf is not finite"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert words in " ".join(result.output.split()).replace("│", " ").replace("  ", " "), result.output


@pytest.mark.parametrize(
    "command", [("export",), ("eval",), ("train",), ("detect",), ("prune", "auto"), ("dataset", "prepare")]
)
def test_flags_show_no_value_in_help(command: tuple[str, ...]) -> None:
    """A flag such as --dynamic takes no value; "--dynamic <bool>" in --help said it did."""
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    flagged = [line for line in result.output.splitlines() if "<bool>" in line and "--help" not in line]
    assert flagged == []
