"""MLflow runs behind one small interface: :class:`Tracker` (params, metrics with a step, files,
tags, nested runs), and :data:`NO_TRACKING`, the same interface doing nothing.

A tracking store that is down, slow or refuses a value never costs a run: the first failure is one
warning through the Reporter, and from then on every tracker of the command does nothing. MLflow's
HTTP client retries for minutes by default (7 retries, exponential backoff, a 120 s timeout), so its
bounds are lowered (:data:`HTTP_SETTINGS`, set only when the user has not set them): a dead server
is noticed in about a second, a hung one within a few timeouts.

MLflow is imported lazily and through ``engine/quiet_libs.py`` (its telemetry off); its log lines
and warnings are kept out of the command's output, and it does not print run URLs to stdout (which
would break ``--json``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from yolor_cli.engine.errors import MissingDependencyError, first_line
from yolor_cli.engine.quiet_libs import import_quiet
from yolor_cli.engine.reporting import Reporter
from yolor_cli.engine.tracking.options import TrackingSettings

# MLflow's HTTP client bounds, unless the user set them: one retry after half a second, 10 s per
# request. A tracking call is made a few times per epoch, so a server that needs longer is treated
# as down (the run goes on untracked) rather than stalling training.
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",  # MLflow reads an integer; 0: retry at once
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# Always: MLflow prints each finished run's URL to stdout when it logs to a server.
OUTPUT_SETTINGS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy", "huey")  # what MLflow and its store log through
MAX_PARAM_VALUE = 6000  # MLflow refuses longer param values (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)
MAX_TAG_VALUE = 8000  # and longer tag values
PARAMS_PER_BATCH = 100  # log_batch's limit for params (and tags)
METRICS_PER_BATCH = 1000  # and for metrics

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: how its UI nests a run under another
RUN_NAME_TAG = "mlflow.runName"
INPUT_RUN_TAG = "yolor.input_run_id"  # the run that wrote the command's input checkpoint (lineage)
COMMAND_TAG = "yolor.command"

_active: list[str] = []  # run ids of this process's open trackers, innermost last (see active_run_id)


def active_run_id() -> str | None:
    """The innermost MLflow run this process is logging to, if any: the id a checkpoint written now
    records (engine/model/checkpoint.py), so the next command's run can name it as its input's."""
    return _active[-1] if _active else None


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys (``recipe.optimizer``), every value as text; None is left out."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif value is not None:
            text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            flat[name] = text[:MAX_PARAM_VALUE]
    return flat


class _Session:
    """One command's connection to the store, shared by its run and the nested ones: the client, and
    whether tracking failed (then everything is skipped, and the one warning was given)."""

    def __init__(self, settings: TrackingSettings, reporter: Reporter) -> None:
        self.settings, self.reporter = settings, reporter
        self.failed = False
        self.client: Any = None
        self.experiment_id: str | None = None
        self.entities: Any = None

    def call(self, what: str, action: Callable[[], Any]) -> Any:
        """``action()`` with MLflow's output kept quiet; any failure turns tracking off with one warning."""
        if self.failed:
            return None
        try:
            with _quiet():
                return action()
        except Exception as error:  # the store's failure is never the run's: say it once, go on untracked
            self.failed = True
            self.reporter.warning(
                f"MLflow tracking is off for the rest of this command: {what} failed at {self.settings.uri} "
                f"({type(error).__name__}: {first_line(error)})"
            )
            return None

    def connect(self) -> bool:
        def connect() -> None:
            mlflow = _import_mlflow()
            from mlflow.entities import Metric, Param, RunTag

            self.entities = (Metric, Param, RunTag)
            self.client = mlflow.MlflowClient(tracking_uri=self.settings.uri)
            self.experiment_id = self._experiment()

        self.call("connecting to the tracking store", connect)
        return not self.failed

    def _experiment(self) -> str:
        name = self.settings.experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = self.settings.artifacts
        try:
            location = f"{artifacts}/{name}" if artifacts else None
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another process created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id


def _import_mlflow() -> Any:
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    os.environ.update(OUTPUT_SETTINGS)
    module = import_quiet("mlflow")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    return module


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's Python warnings (deprecations, its store's notes) are not the user's business, nor what
    it writes to stdout (run URLs; some versions print them with no switch): stdout is ours (--json)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


class Tracker:
    """One MLflow run: params, metrics with a step, files, tags, and nested runs (:meth:`child`).
    A context manager: leaving it ends the run, FAILED on an exception, KILLED on Ctrl-C.

    The no-op form (:data:`NO_TRACKING`, ``session`` None) accepts every call and has no ``run_id``."""

    def __init__(self, session: _Session | None = None, run_id: str | None = None, continued: bool = False) -> None:
        self.session, self.run_id = session, run_id
        self.continued = continued  # an earlier run taken up again (a resumed training): it has its params
        self.ended = False
        self.weights_wanted = True  # False: --mlflow-log-weights does not apply to this run (a tune trial)

    @property
    def enabled(self) -> bool:
        """Whether anything logged still reaches the store (False when off, or after a failure)."""
        return self.session is not None and self.run_id is not None and not self.session.failed

    @property
    def log_weights(self) -> bool:
        return self.enabled and self.weights_wanted and self.session is not None and self.session.settings.log_weights

    def _log(self, what: str, action: Callable[[Any], Any]) -> None:
        if self.enabled:
            assert self.session is not None
            session = self.session
            session.call(what, lambda: action(session.client))

    def params(self, values: Mapping[str, Any], prefix: str = "") -> None:
        """Params (nested mappings flattened to dotted keys). MLflow keeps a param's first value: a
        resumed run does not log them again."""
        if not self.enabled:
            return
        assert self.session is not None
        Param = self.session.entities[1]
        items = [Param(key, value) for key, value in flatten(values, prefix).items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            batch = items[start : start + PARAMS_PER_BATCH]
            self._log("logging params", lambda client, batch=batch: client.log_batch(self.run_id, params=batch))

    def metrics(self, values: Mapping[str, float | None], step: int | None = None) -> None:
        """Metrics at ``step`` (the epoch, the prune step, the trial); None values are left out."""
        if not self.enabled:
            return
        assert self.session is not None
        Metric = self.session.entities[0]
        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step or 0) for key, value in values.items() if value is not None]
        for start in range(0, len(items), METRICS_PER_BATCH):
            batch = items[start : start + METRICS_PER_BATCH]
            self._log("logging metrics", lambda client, batch=batch: client.log_batch(self.run_id, metrics=batch))

    def tags(self, values: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        assert self.session is not None
        RunTag = self.session.entities[2]
        items = [RunTag(key, str(value)[:MAX_TAG_VALUE]) for key, value in values.items() if value is not None]
        if items:
            self._log("setting tags", lambda client: client.log_batch(self.run_id, tags=items))

    def artifact(self, path: Path, folder: str | None = None) -> None:
        """Copy a file of the run to the run's artifacts (under ``folder``); a file that is not there
        (a plot without matplotlib) is skipped."""
        if self.enabled and Path(path).is_file():
            self._log(
                f"logging {Path(path).name}",
                lambda client: client.log_artifact(self.run_id, str(path), artifact_path=folder),
            )

    def artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        for path in paths:
            self.artifact(path, folder)

    def child(self, name: str, tags: Mapping[str, Any] | None = None, log_weights: bool = True) -> Tracker:
        """A run nested under this one (a prune step's fine-tune, a tune trial), in the same experiment:
        the no-op tracker when this one is off. ``log_weights`` False: the child never copies weights,
        whatever --mlflow-log-weights says (tune keeps only the best trial's, logged on its own run)."""
        if not self.enabled:
            return NO_TRACKING
        assert self.session is not None
        child = _start_run(self.session, name, {**(tags or {}), PARENT_TAG: self.run_id})
        if child is not NO_TRACKING:
            child.weights_wanted = log_weights
        return child

    def end(self, status: str = "FINISHED") -> None:
        if self.ended or self.run_id is None:
            return
        self.ended = True
        if self.run_id in _active:
            _active.remove(self.run_id)
        self._log("ending the run", lambda client: client.set_terminated(self.run_id, status=status))

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")


NO_TRACKING = Tracker()  # tracking off: every call does nothing


def _start_run(session: _Session, name: str | None, tags: Mapping[str, Any], run_id: str | None = None) -> Tracker:
    """A new run in the session's experiment, or with ``run_id`` that run continued (a resumed training)
    when the store has it."""

    def start() -> tuple[str, bool]:
        client = session.client
        if run_id is not None:
            with contextlib.suppress(Exception):  # not in this store: a new run instead
                run = client.get_run(run_id)
                if run.info.experiment_id == session.experiment_id:
                    client.update_run(run_id, status="RUNNING")
                    return run_id, True
        clean = {key: str(value)[:MAX_TAG_VALUE] for key, value in tags.items() if value is not None}
        return client.create_run(session.experiment_id, tags=clean, run_name=name).info.run_id, False

    started = session.call("starting a run", start)
    if started is None:
        return NO_TRACKING
    _active.append(started[0])
    return Tracker(session, *started)


def start_tracking(
    settings: TrackingSettings | None,
    reporter: Reporter,
    *,
    command: str,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    resume_run_id: str | None = None,
) -> Tracker:
    """The run of one command (``command``: train, prune auto, export...), or :data:`NO_TRACKING` when
    ``settings`` is None or the store cannot be reached (then after one warning). ``resume_run_id``:
    the run a resumed training continues. MLflow missing is an error when --mlflow asked for it,
    a warning when only MLFLOW_TRACKING_URI is set (the variable may be meant for other tools)."""
    if settings is None:
        return NO_TRACKING
    try:
        with _quiet():
            _import_mlflow()
    except ImportError:
        if settings.explicit:
            raise MissingDependencyError(
                "--mlflow needs the Python package mlflow, which is not installed",
                hint="pip install 'yolor-cli[mlflow]'",
            ) from None
        reporter.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed: this run is not tracked")
        return NO_TRACKING
    session = _Session(settings, reporter)
    if not session.connect():
        return NO_TRACKING
    return _start_run(session, name, {**(tags or {}), COMMAND_TAG: command}, resume_run_id)
