"""Class count from the user: every dependent line is rewritten, hand edits fail clearly."""

from __future__ import annotations

import pytest
import torch

from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import DarknetModel, build_model, cfg_num_classes, with_num_classes


def test_nc_rewrites_classes_head_filters_and_implicit_mul() -> None:
    cfg = load_cfg("yolor_csp")
    one = with_num_classes(cfg, 1)
    changed = {
        (index, key, cfg.layers[index].options[key], value)
        for index, section in enumerate(one.layers)
        for key, value in section.options.items()
        if cfg.layers[index].options[key] != value
    }
    # Three [yolo] classes=, three head convs and the three [implicit_mul] they are scaled by.
    assert changed == {
        (175, "classes", "80", "1"),
        (181, "classes", "80", "1"),
        (187, "classes", "80", "1"),
        (173, "filters", "255", "18"),
        (179, "filters", "255", "18"),
        (185, "filters", "255", "18"),
        (167, "filters", "255", "18"),
        (168, "filters", "255", "18"),
        (169, "filters", "255", "18"),
    }
    assert cfg_num_classes(one) == 1 and cfg_num_classes(cfg) == 80  # the input is not modified


def test_model_built_for_nc_outputs_5_plus_nc() -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=4).eval()
    with torch.no_grad():
        decoded, raw = model(torch.rand(1, 3, 64, 64))
    assert model.nc == 4 and decoded.shape[-1] == 9 and raw[0].shape[-1] == 9


def test_editing_only_classes_fails_with_a_clear_message() -> None:
    """By hand, people change classes= and forget filters=: say so before any tensor error."""
    cfg = load_cfg("yolor_csp_tiny")
    for section in cfg.layers:
        if section.type == "yolo":
            section.options["classes"] = "1"
    with pytest.raises(CfgError) as caught:
        DarknetModel(cfg)
    assert "needs 18 input channels, but the layer before it gives 255" in caught.value.message
    assert "--nc" in caught.value.hint


def test_forgetting_implicit_mul_fails_with_a_clear_message() -> None:
    """The classic miss: head filters edited, [implicit_mul] left at 255."""
    cfg = load_cfg("yolor_csp_tiny")
    for section in cfg.layers:
        if section.type == "yolo":
            section.options["classes"] = "1"
        elif section.type == "convolutional" and section.options["filters"] == "255":
            section.options["filters"] = "18"
    with pytest.raises(CfgError, match=r"\[control_channels\] combines 18 channels with layer \d+, which has 255"):
        DarknetModel(cfg)


def test_nc_must_be_positive() -> None:
    with pytest.raises(CfgError, match="the class count must be at least 1, got 0"):
        with_num_classes(load_cfg("yolor_csp_tiny"), 0)
