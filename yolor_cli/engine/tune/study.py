"""The Optuna side of ``yolor tune``: the one import of Optuna, its logging, the storage, the study,
its sampler and pruner, heartbeats, and how several processes share one study.

**Storage.** A SQLAlchemy URL: a SQLite file in the run folder by default, any database (PostgreSQL...)
with ``--storage``. Heartbeats are on: a process records one for its running trial every
:data:`HEARTBEAT_SECONDS`; a trial whose heartbeat is older than :data:`GRACE_SECONDS` (its process was
killed, with ``kill -9`` or a lost machine) is marked FAIL by Optuna's ``fail_stale_trials`` when any
process starts a trial, and a new trial takes its place.

**Several processes, one study.** ``--trials N`` is the study's total of finished trials (complete or
pruned). A process asks for a trial, then counts the live trials (running or finished) numbered below
it: trial numbers follow the storage's row ids, so processes agree on them, and a process that sees N
ahead sets its trial aside (failed before it draws a value, counted nowhere) and stops. No lock is
needed, so this works across machines on any RDB storage. No trial is ever WAITING (a queued trial
could be popped by two processes at once on SQLite): the base hyp is the first trial's fixed draw.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from yolor_cli.engine.errors import MissingDependencyError, YolorError, first_line
from yolor_cli.engine.reporting import Reporter

# How often a running trial tells the storage it is alive, and how long without that makes it stale.
# A trial's epoch can take many minutes, but the heartbeat runs on its own thread, so only a process
# that is gone (or a machine cut off from the database) misses it; the grace period leaves room for a
# slow database.
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
# SQLite allows one writer at a time; a process waits this long for another's write instead of failing.
SQLITE_BUSY_SECONDS = 60
# TPE draws at random for its first trials, then models the good and the bad ones; Optuna's 10 would
# leave half of a 20-trial budget unmodelled.
TPE_STARTUP_TRIALS = 5
# The median pruner judges a trial against the median of earlier trials at the same epoch, once this
# many trials have finished, and not before the first third of a trial's epochs (early mAP is noisy).
MEDIAN_STARTUP_TRIALS = 2
MEDIAN_WARMUP_FRACTION = 1 / 3
HYPERBAND_REDUCTION = 3  # Optuna's default: each rung keeps the best third
STORAGE_ATTEMPTS, STORAGE_RETRY_SECONDS = 3, 1.0  # see open_storage
SEED_STRIDE = 1_000_003  # a prime: trial seeds of different --seed values do not collide for small numbers


def import_optuna() -> ModuleType:
    """Optuna, with its own logging off (our reporter says what matters); a clear error without it."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError(
            "yolor tune needs Optuna, which is not installed", hint="pip install 'yolor-cli[tune]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()  # it prints to stderr; warnings come through forward_logs
    return optuna


class _ToReporter(logging.Handler):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.warning(f"optuna: {record.getMessage()}")


@contextlib.contextmanager
def forward_logs(optuna: ModuleType, reporter: Reporter) -> Iterator[None]:
    """Optuna's warnings as the reporter's for the duration; its experimental-API warnings are ours to
    heed (fail_stale_trials and the matplotlib plots are marked experimental), not the user's."""
    handler = _ToReporter(reporter)
    optuna.logging.get_logger("optuna").addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Our own loop records the heartbeats (see heartbeat()), which Optuna's check cannot see.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            # Its plots' remarks on small studies ("importances will be equal"): the plot shows as much.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"optuna\.")
            yield
    finally:
        optuna.logging.get_logger("optuna").removeHandler(handler)


def shown_url(url: str) -> str:
    """The storage URL as it may be printed and written: without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: the storage will say so; never echo a secret
        return url.split("@")[-1] if "@" in url else url


def _connect(optuna: ModuleType, url: str) -> Any:
    """Processes started together on a new database race to create its tables: the losers try again
    (:data:`STORAGE_ATTEMPTS`) and find them made."""
    from sqlalchemy import exc  # Optuna's own dependency

    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if url.startswith("sqlite") else {}
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
            )
        except (exc.IntegrityError, exc.OperationalError):
            if attempt == STORAGE_ATTEMPTS:
                raise
            time.sleep(STORAGE_RETRY_SECONDS)
    raise AssertionError("unreachable")


def open_storage(optuna: ModuleType, url: str) -> Any:
    """An RDB storage with heartbeats; a URL that does not work is one message, not a traceback."""
    try:
        return _connect(optuna, url)
    except ImportError as error:  # a database driver that is not installed (psycopg2 for PostgreSQL...)
        raise YolorError(
            f"--storage {shown_url(url)}: {first_line(error)}",
            hint="install the database's Python driver (e.g. pip install psycopg2-binary for PostgreSQL)",
        ) from None
    except Exception as error:  # SQLAlchemy's argument and connection errors, Optuna's version checks
        raise YolorError(
            f"cannot open the study storage {shown_url(url)}: {first_line(error)}",
            hint="give an SQLAlchemy URL such as sqlite:///tune.db or postgresql://user:password@host/db",
        ) from None


def make_sampler(optuna: ModuleType, name: str, seed: int, fixed: dict[str, Any] | None = None) -> Any:
    """The sampler; with ``fixed``, one that draws exactly those values (the base hyp's first trial)."""
    if name == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
    return optuna.samplers.PartialFixedSampler(fixed, sampler) if fixed else sampler


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number``: processes sharing a study draw different values, and a
    study repeats with the same ``--seed``."""
    return (seed * SEED_STRIDE + number) % 2**32


def make_pruner(optuna: ModuleType, name: str, epochs: int) -> Any:
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=HYPERBAND_REDUCTION)
    return optuna.pruners.MedianPruner(
        n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=int(epochs * MEDIAN_WARMUP_FRACTION)
    )


SETTINGS_KEY = "yolor_tune"  # the study's user attribute holding what makes its trials comparable


def open_study(
    optuna: ModuleType, storage: Any, name: str, settings: dict[str, Any], *, sampler: Any, pruner: Any
) -> tuple[Any, bool]:
    """The study ``name`` in ``storage`` (created when new, with ``settings`` recorded) and whether this
    call created it. Joining a study whose trials were trained otherwise (another space, metric, data,
    epochs...) is refused: their values could not be compared."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner
        )
        study.set_user_attr(SETTINGS_KEY, settings)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise YolorError(f"the study {name!r} minimises; yolor tune maximises mAP", hint="choose another --study")
    recorded = study.user_attrs.get(SETTINGS_KEY)
    if recorded is None:
        raise YolorError(
            f"the study {name!r} in this storage was not made by yolor tune", hint="choose another --study"
        )
    different = sorted(key for key in settings if recorded.get(key) != settings[key])
    if different:
        raise YolorError(
            f"the study {name!r} was tuned with other {', '.join(different)}: its trials could not be compared",
            hint="give the options it was started with (its tune.json), or choose another --study",
        )
    return study, False


def fail_stale(optuna: ModuleType, study: Any) -> None:
    """Mark trials whose process died (no heartbeat for the grace period) FAIL."""
    optuna.storages.fail_stale_trials(study)


def live_ahead(optuna: ModuleType, storage: Any, study: Any, number: int) -> int:
    """Trials numbered below ``number`` that are running or finished (complete or pruned), read from the
    database itself (not a cache), so that every process counts the same trials."""
    states = optuna.trial.TrialState
    live = (states.RUNNING, states.COMPLETE, states.PRUNED)
    trials = storage.get_all_trials(study._study_id, deepcopy=False, states=live)
    return sum(1 for trial in trials if trial.number < number)


SURPLUS_ATTR = "surplus"  # a trial beyond the study's total, failed at once: counted nowhere


def set_aside(optuna: ModuleType, storage: Any, trial: Any) -> None:
    """A trial beyond the study's total: marked and failed before it draws a value, and left out of
    every count and table. (Handing it back to WAITING would race: on SQLite two processes can pop
    the same waiting trial.)"""
    storage.set_trial_user_attr(trial._trial_id, SURPLUS_ATTR, True)
    storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def counted(trial: Any) -> bool:
    return not trial.user_attrs.get(SURPLUS_ATTR)


@contextlib.contextmanager
def heartbeat(storage: Any, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat now and every :data:`HEARTBEAT_SECONDS` on a thread of its own."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a database hiccup: the next beat tries again
                storage.record_heartbeat(trial_id)
            if stop.wait(HEARTBEAT_SECONDS):
                return

    thread = threading.Thread(target=beat, name=f"yolor-tune-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
