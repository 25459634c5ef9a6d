"""Cfg text: parse/write round trips and errors that point at the file and line."""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE_DIR, reference_path
from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.model.bundled import bundled_model_names, load_cfg
from yolor_cli.engine.model.darknet import DarknetModel, parse_cfg, write_cfg

MINIMAL = """[net]
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=silu
"""


def _official_names() -> list[str]:
    folder = REFERENCE_DIR / "main"
    return sorted(path.stem for path in folder.glob("*.cfg")) if folder.exists() else ["<absent>"]


@pytest.mark.parametrize("name", bundled_model_names())
def test_bundled_cfg_round_trips(name: str) -> None:
    cfg = load_cfg(name)
    again = parse_cfg(write_cfg(cfg))
    assert again == cfg
    assert [s.type for s in again.layers] == [s.type for s in cfg.layers]


@pytest.mark.parametrize("name", _official_names())
def test_official_cfg_round_trips(name: str) -> None:
    path = reference_path("main", f"{name}.cfg")
    cfg = load_cfg(path)
    text = write_cfg(cfg, header="regenerated")
    assert text.startswith("# regenerated")
    assert parse_cfg(text) == cfg


def test_options_keep_their_line_numbers() -> None:
    cfg = parse_cfg(MINIMAL, source="mini.cfg")
    conv = cfg.layers[0]
    assert conv.line == 4
    assert conv.option_lines["filters"] == 6
    assert conv.where("mini.cfg", "stride") == "mini.cfg:8"


def test_comments_and_blank_lines_are_ignored() -> None:
    cfg = parse_cfg("# header\n[net]\n; note\nwidth = 64  # inline\n\n[route]\nlayers = -1, -3\n")
    assert cfg.net.options == {"width": "64"}
    assert cfg.layers[0].options == {"layers": "-1, -3"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[net]\n[convolutional]\nfilters=8\n[conv_typo]\n", "<t>:4: unknown section [conv_typo]"),
        ("[net]\n[convolutional]\nfilters=8\nsizee=3\n", "<t>:4: unknown key 'sizee' in [convolutional]"),
        ("[net]\n[convolutional]\nfilters=8\nfilters=16\n", "<t>:4: duplicate key 'filters'"),
        ("[net]\n[convolutional]\nfilters\n", "<t>:3: expected key=value"),
        ("filters=3\n[net]\n", "<t>:1: option 'filters=3' appears before any [section]"),
        ("[convolutional]\nfilters=3\n", "<t>:1: the first section must be [net]"),
        ("[net]\n[convolutional]\nfilters=eight\n", "<t>:3: filters=eight is not an integer"),
        ("[net]\n[convolutional]\nfilters=8\nactivation=gelu\n", "unknown activation 'gelu'"),
        ("[net]\n[route]\nlayers=-4\n", "layers=-4 points to layer -4"),
        ("[net]\n[convolutional\n", "<t>:2: malformed section header"),
        # sizes no machine could hold are refused before any tensor is allocated (survey defect 10)
        ("[net]\n[convolutional]\nfilters=100000000\n", "<t>:3: filters=100000000 is more than the 65536"),
        ("[net]\n[implicit_add]\nfilters=100000000\n", "<t>:3: filters=100000000 is more than the 65536"),
        (
            "[net]\n[convolutional]\nfilters=60000\n[convolutional]\nfilters=60000\nsize=3\n",
            "<t>:4: this convolution would hold 32,400,000,000 weights",
        ),
        ("[net]\n[convolutional]\nfilters=60000\n[route]\nlayers=-1,-1\n", "layer 1 would have 120000 channels"),
        ("", "no sections found"),
    ],
)
def test_bad_cfgs_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(CfgError) as caught:
        DarknetModel(parse_cfg(text, source="<t>"))
    assert message in str(caught.value)


def test_unknown_section_lists_the_known_ones() -> None:
    with pytest.raises(CfgError) as caught:
        DarknetModel(parse_cfg("[net]\n[deformableconvolutional]\nfilters=8\n", source="x.cfg"))
    assert "implicit_mul" in caught.value.hint and "shift_channels" in caught.value.hint


def test_darknet_c_cfgs_are_rejected_with_the_key_that_differs() -> None:
    path = reference_path("main", "darknet", "yolov4-csp.cfg")
    with pytest.raises(CfgError) as caught:
        DarknetModel(load_cfg(path))
    assert "unknown key" in caught.value.message and "[yolo]" in caught.value.message


def test_missing_cfg_file_names_the_bundled_models(tmp_path) -> None:
    with pytest.raises(CfgError) as caught:
        load_cfg(tmp_path / "nope.cfg")
    assert "not found" in caught.value.message
    assert "yolor_csp_tiny" in caught.value.hint
