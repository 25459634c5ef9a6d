"""Tracking in MLflow: one MLflow run per command, nested runs for the parts of a command (prune
auto's fine-tunes, tune's trials), and the run id kept in the checkpoints a run writes, so that the
next command's run names its input's run (lineage).

A leaf of the engine: it imports no stage. The options are :mod:`.options` (standard library only,
read by the requests); the runs are :mod:`.tracker` (MLflow is imported there, lazily, through
``engine/quiet_libs.py``). A stage that tracks takes a :class:`~.tracker.Tracker`: the no-op
:data:`~.tracker.NO_TRACKING` when tracking is off, so no caller asks whether it is on.
"""
