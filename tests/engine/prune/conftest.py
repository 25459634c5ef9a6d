"""Shared by the prune tests: prune auto's final table on PyTorch only, unless a test asks for more."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def torch_only_final_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final table times each model on every runtime installed (an export and a quantization each);
    a prune auto test about something else keeps PyTorch's latencies, which the run has measured already.
    tests/engine/prune/test_final_table.py overrides this fixture and tests the other runtimes."""
    from yolor_cli.engine.prune import auto

    monkeypatch.setattr(auto, "available_runtimes", lambda: (["torch"], []))
