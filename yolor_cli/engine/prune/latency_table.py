"""What each pruning unit's cut saves on the runtime that deploys: a per-unit latency table.

For every unit and amount, the model with that unit alone cut by that amount is exported for the
runtime and timed (:func:`runtime_latency_ms`: batch 1, the run's size, median after warm-up). The
table is measured once per model, runtime and size, and kept as ``latency_<runtime>_<size>.json`` in
the run (or scan) folder: written after every entry, so an interrupted measurement continues where it
stopped, and keyed by a hash of the model's cfg, so a table of another model (another cfg, or the
same cfg pruned) is measured again rather than trusted.

Cuts interact (a conv that loses inputs and outputs saves more than either cut alone), so the table
is an estimate of a combined cut; the allocator that spends it measures its plan as a whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolor_cli.engine.deploy.runtime_latency import check_runtime, runtime_latency_ms
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.darknet.cfg import write_cfg
from yolor_cli.engine.prune.units import PruneUnit, pruned_variant, unit_amounts
from yolor_cli.engine.reporting import Reporter, SilentReporter

TABLE_VERSION = 1
TABLE_PATTERN = "latency_*_*.json"  # what a scan folder may hold besides the scan's own files


def table_name(runtime: str, img_size: int) -> str:
    return f"latency_{runtime}_{img_size}.json"


def cfg_hash(model: DarknetModel) -> str:
    """The model's architecture (its cfg, channel counts included) as a short hash: what a cached
    table belongs to. The weights do not change a latency, so they are not part of it."""
    return hashlib.sha256(write_cfg(model.cfg).encode()).hexdigest()[:16]


def _key(amount: float) -> str:
    return f"{amount:g}"


@dataclass
class LatencyTable:
    """``base_ms``: the unpruned model; ``cuts[unit][amount]``: the model with that unit alone cut."""

    runtime: str
    img_size: int
    cfg_hash: str
    base_ms: float
    cuts: dict[str, dict[str, float]] = field(default_factory=dict)

    def ms(self, unit: str, amount: float) -> float | None:
        return self.cuts.get(unit, {}).get(_key(amount))

    def saved_ms(self, unit: str, amount: float) -> float | None:
        """Milliseconds the cut saves (negative when it measured slower), None when not measured."""
        ms = self.ms(unit, amount)
        return None if ms is None else self.base_ms - ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": TABLE_VERSION,
            "runtime": self.runtime,
            "img_size": self.img_size,
            "cfg_hash": self.cfg_hash,
            "base_ms": self.base_ms,
            "cuts": self.cuts,
        }

    def save(self, path: Path) -> None:
        data = (json.dumps(self.to_dict(), indent=1) + "\n").encode()
        atomic_write(path, lambda stream: stream.write(data), sync=False)


def read_table(path: Path, *, runtime: str, img_size: int, model_hash: str) -> LatencyTable | None:
    """The cached table at ``path`` when it belongs to this model, runtime and size; None when there is
    none, it is another's (stale) or it cannot be read (it is then measured again)."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        table = LatencyTable(
            runtime=str(raw["runtime"]),
            img_size=int(raw["img_size"]),
            cfg_hash=str(raw["cfg_hash"]),
            base_ms=float(raw["base_ms"]),
            cuts={str(unit): {str(k): float(v) for k, v in row.items()} for unit, row in raw["cuts"].items()},
        )
        if raw["version"] != TABLE_VERSION:
            return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if (table.runtime, table.img_size, table.cfg_hash) != (runtime, img_size, model_hash):
        return None
    return table


def unit_latency_table(
    model: DarknetModel,
    units: Sequence[PruneUnit],
    amounts: Sequence[float],
    *,
    runtime: str,
    img_size: int,
    folder: Path,
    reporter: Reporter | None = None,
) -> LatencyTable:
    """The latency table of ``model`` on ``runtime`` at ``img_size``: read from ``folder`` when cached
    there for this model, else (and for any entry missing from it) measured and saved there. Which
    channels go does not change a latency, so the cuts rank by L1 whatever the run ranks by."""
    reporter = reporter or SilentReporter()
    check_runtime(runtime)
    path = folder / table_name(runtime, img_size)
    model_hash = cfg_hash(model)
    table = read_table(path, runtime=runtime, img_size=img_size, model_hash=model_hash)
    if table is None:
        if path.exists():
            reporter.info(f"{path.name} belongs to another model or size: measuring it again")
        table = LatencyTable(runtime, img_size, model_hash, runtime_latency_ms(model, img_size, runtime))
        folder.mkdir(parents=True, exist_ok=True)
        table.save(path)
    missing = [
        (unit, amount)
        for unit in units
        for amount in unit_amounts(unit, tuple(amounts))
        if table.ms(unit.name, amount) is None
    ]
    if not missing:
        return table
    message = f"Timing {len(missing)} cuts on {runtime} at {img_size} px (once; kept in {path.name})"
    for unit, amount in reporter.track(missing, message, total=len(missing)):
        variant = pruned_variant(model, unit, amount, method="l1")  # a block: removed
        # None: the amount rounds to no channel, so the model is the unpruned one
        ms = table.base_ms if variant is None else runtime_latency_ms(variant, img_size, runtime)
        table.cuts.setdefault(unit.name, {})[_key(amount)] = ms
        table.save(path)
    return table
