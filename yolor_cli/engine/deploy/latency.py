"""Latency as deployments see it: one batch at a time, after warm-up, the median of several runs.

The median, not the mean: on a shared CPU one descheduled run would otherwise move the figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

WARMUP_RUNS = 3  # first runs pay for lazy initialisation, kernel selection and cold caches
LATENCY_RUNS = 10


def median_latency_ms(
    run: Callable[[Any], object], inputs: Sequence[Any], *, runs: int = LATENCY_RUNS, warmup: int = WARMUP_RUNS
) -> float:
    """Milliseconds of the median ``run(x)``, cycling through ``inputs`` (the same ones for every model
    compared, so each sees the same pixels)."""
    if not inputs:
        raise ValueError("no inputs to time")
    for index in range(warmup):
        run(inputs[index % len(inputs)])
    times = []
    for index in range(runs):
        start = time.perf_counter()
        run(inputs[index % len(inputs)])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
