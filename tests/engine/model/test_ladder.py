"""The size ladder: yolor_csp_n and yolor_csp_s are yolor_csp scaled by width and depth, between tiny and full."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from tests.test_cli import invoke
from yolor_cli.app import app
from yolor_cli.engine.model.bundled import bundled_model_names, configs_dir, load_cfg, resolve_cfg_path
from yolor_cli.engine.model.darknet import DarknetCfg, DarknetModel, build_model, count_parameters

# Measured here with `yolor info --cfg NAME --json` (nc=80) and `--nc 1`.
LADDER_PARAMS = {
    ("yolor_csp_n", 80): 2_872_522,
    ("yolor_csp_n", 1): 2_764_924,
    ("yolor_csp_s", 80): 11_217_834,
    ("yolor_csp_s", 1): 11_004_060,
}
# The scaling each cfg's header states: channel multiplier and residual blocks per backbone stage
# (yolor_csp has 1, 2, 8, 8, 4).
LADDER_SCALING = {"yolor_csp_n": (0.25, [1, 1, 4, 4, 2]), "yolor_csp_s": (0.5, [1, 1, 4, 4, 2])}
MIN_CHANNELS = 16  # narrower scaled layers are widened to this
NC_DEPENDENT_FILTERS = "255"  # 3 anchors x (5 + 80 classes): rewritten by --nc, never scaled
REFERENCE_KEYS = ("layers", "from")  # route / shortcut / shift_channels / control_channels targets


def _meta_model(name: str, nc: int | None = None) -> DarknetModel:
    with torch.device("meta"):
        return build_model(load_cfg(name), nc=nc)


def _skeleton(cfg: DarknetCfg, width: float = 1.0) -> tuple[list[tuple], list[int]]:
    """The cfg with each run of residual blocks (1x1 conv, 3x3 conv, shortcut from=-3) as one entry,
    every layer reference as the index of its entry, and filters scaled by ``width``; and the block
    count of each run."""

    def scaled(options: dict[str, str]) -> tuple:
        out = dict(options)
        if "filters" in out and out["filters"] != NC_DEPENDENT_FILTERS:
            out["filters"] = str(max(MIN_CHANNELS, int(int(out["filters"]) * width)))
        return tuple(sorted(out.items()))

    layers = cfg.layers
    block_starts = {i - 2 for i, s in enumerate(layers) if s.type == "shortcut" and s.options["from"] == "-3"}
    entry_of: list[int] = []  # the entry index of every layer
    entries: list[tuple] = []
    depths: list[int] = []
    i = 0
    while i < len(layers):
        if i in block_starts:
            first, blocks = i, 0
            while i in block_starts:
                entry_of += [len(entries)] * 3
                i, blocks = i + 3, blocks + 1
            entries.append(("residual", scaled(layers[first].options), scaled(layers[first + 1].options)))
            depths.append(blocks)
            continue
        options = dict(layers[i].options)
        for key in REFERENCE_KEYS:
            if key in options:
                targets = (int(ref) for ref in options[key].split(","))
                options[key] = ",".join(str(entry_of[i + t if t < 0 else t]) for t in targets)
        entry_of.append(len(entries))
        entries.append((layers[i].type, scaled(options)))
        i += 1
    return entries, depths


@pytest.mark.parametrize("name", list(LADDER_SCALING))
def test_ladder_cfg_is_yolor_csp_scaled_by_width_and_depth(name: str) -> None:
    """Same sections, routes, shortcuts, heads, anchors and [net] as yolor_csp; only widths and block counts differ."""
    width, depths = LADDER_SCALING[name]
    official = load_cfg("yolor_csp")
    cfg = load_cfg(name)
    ours, our_depths = _skeleton(cfg)
    expected, official_depths = _skeleton(official, width)
    assert ours == expected
    assert (our_depths, official_depths) == (depths, [1, 2, 8, 8, 4])
    assert cfg.net == official.net
    filters = [
        int(s.options["filters"])
        for s in cfg.layers
        if s.options.get("filters", NC_DEPENDENT_FILTERS) != NC_DEPENDENT_FILTERS
    ]
    assert filters and all(f % MIN_CHANNELS == 0 for f in filters)


@pytest.mark.parametrize(("name", "nc"), list(LADDER_PARAMS))
def test_ladder_cfgs_have_the_measured_parameter_counts(name: str, nc: int) -> None:
    assert count_parameters(_meta_model(name, nc)) == LADDER_PARAMS[(name, nc)]


def test_ladder_sits_between_tiny_and_yolor_csp() -> None:
    ladder = ["yolor_csp_tiny", "yolor_csp_n", "yolor_csp_s", "yolor_csp"]
    counts = [count_parameters(_meta_model(name)) for name in ladder]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


@pytest.mark.parametrize("name", list(LADDER_SCALING))
def test_ladder_model_decodes_three_levels_in_eval(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_cfg(name), nc=2).eval()
    with torch.no_grad():
        decoded, raw = model(torch.rand(1, 3, 128, 128))
    assert [tuple(level.shape) for level in raw] == [(1, 3, 16, 16, 7), (1, 3, 8, 8, 7), (1, 3, 4, 4, 7)]
    assert decoded.shape == (1, 3 * (16 * 16 + 8 * 8 + 4 * 4), 7)
    assert torch.isfinite(decoded).all()


@pytest.mark.parametrize("name", list(LADDER_SCALING))
def test_ladder_names_resolve_and_info_reports_them(name: str) -> None:
    assert name in bundled_model_names()
    assert resolve_cfg_path(name) == configs_dir() / "models" / f"{name}.cfg"
    result = invoke("info", "--cfg", name, "--img-size", "320", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["params"], report["nc"], report["img_size"]) == (LADDER_PARAMS[(name, 80)], 80, 320)


def test_shell_completion_offers_the_whole_ladder() -> None:
    result = CliRunner().invoke(
        app,
        [],
        prog_name="yolor",
        env={"_YOLOR_COMPLETE": "complete_bash", "COMP_WORDS": "yolor info --cfg yolor_csp_", "COMP_CWORD": "3"},
    )
    assert result.exit_code == 0
    assert {"yolor_csp_n", "yolor_csp_s", "yolor_csp_tiny"} <= set(result.stdout.split())
