"""Third-party libraries loaded with their telemetry switched off: the one way this package imports
``onnxruntime``, ``openvino``, ``nncf`` and ``mlflow``.

Left alone, these libraries report usage to their makers and write identifiers under the user's
home: ``import openvino`` (its converter package) and ``import nncf`` set up OpenVINO's telemetry
(``~/intel/openvino_ga_cid``, ``~/intel/stats``, then Google Analytics look-ups), and onnxruntime
on Linux writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` and sends events. A command-line
tool must not phone home or write outside the folders it was given, so each is switched off through
the settings the libraries read, before they read them:

- onnxruntime: ``ORT_DISABLE_TELEMETRY=1`` (read once, when its environment is created at the first
  session, so it stays set for the process), and ``disable_telemetry_events()`` after the import;
- OpenVINO's telemetry package: its tools (the converter, NNCF) ask it to decline in a CI job, which
  it recognises by ``CI=true``. torch reads ``CI`` too, so that variable is set only while these
  libraries load or convert (OpenVINO's converter checks again on each ``convert_model``), then
  restored;
- NNCF: ``NNCF_CI`` (read at import) replaces its telemetry object with a stub;
- MLflow (3.x sends usage events from a background thread, set up at ``import mlflow``):
  ``MLFLOW_DISABLE_TELEMETRY=true``, read at import and by the tracking server it may start.

OpenVINO's documented ``opt_in_out --opt_out`` would write a consent file into the user's home,
which is what this avoids.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

# Read by onnxruntime when its environment starts, by MLflow at import; the process keeps them (its
# child processes too).
PROCESS_SETTINGS = {"ORT_DISABLE_TELEMETRY": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
# Read while OpenVINO's and NNCF's telemetry is set up; restored afterwards (torch also reads CI).
LOADING_SETTINGS = {"CI": "true", "NNCF_CI": "1"}


@contextlib.contextmanager
def telemetry_off() -> Iterator[None]:
    """Around an import of these libraries or a call that sets their telemetry up again
    (``openvino.convert_model``): every telemetry switch set, the loading-time ones restored after."""
    for name, value in PROCESS_SETTINGS.items():
        os.environ.setdefault(name, value)
    previous = {name: os.environ.get(name) for name in LOADING_SETTINGS}
    os.environ.update(LOADING_SETTINGS)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_quiet(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with telemetry off (raises ImportError as it does)."""
    with telemetry_off():
        module = importlib.import_module(name)
    if name.partition(".")[0] == "onnxruntime":
        disable = getattr(importlib.import_module("onnxruntime"), "disable_telemetry_events", None)
        if disable is not None:  # the events API (Windows' ETW provider; a no-op where the variable suffices)
            disable()
    return module
