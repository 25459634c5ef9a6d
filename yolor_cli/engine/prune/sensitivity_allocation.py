"""``yolor prune auto --allocate sensitivity``: share the cut among the layers by what each one costs.

The global ranking compares channel norms across layers, which says nothing about how much a layer
matters to the detections. Here a sensitivity scan of the input model (each coupled conv group pruned
alone at 0.25, 0.5 and 0.75, scored on the val split: :mod:`yolor_cli.engine.prune.sensitivity`)
prices every cut in mAP50-95 lost per MACs saved, and the run spends its MACs budget on the cheapest:

1. **Plan, once per run.** Starting from no cut, the unit whose next amount adds the least loss per
   MAC saved moves up a level, until the scan's savings add up to the run's target. The planned
   amounts are then scaled by one factor, found by bisection on a copy of the input, until the input
   pruned by all of them lands on the target. Cuts made together save less than the sum of their
   savings alone (a conv that loses inputs and outputs), so when even the largest factor falls short
   the budget grows by a quarter and more units join the plan.
   The scan (``sensitivity/``) and the plan (``allocation.json``) stay in the run folder, so a
   resumed run neither scans nor plans again.
2. **Each step** prunes every planned unit towards the same share ``f`` of its planned cut (widths
   ``original x (1 - amount x f)``), ``f`` found by bisection so that the step lands on its MACs
   share; a step that the plan cannot reach (rounding, or coupling) takes the rest with the global
   ranking and says so.

**The cost axis.** With ``--target-macs`` a cut's saving is its MACs; with ``--target-latency-ms`` it
is the milliseconds the cut saves on ``--runtime``, from the per-unit latency table of the input
(:mod:`yolor_cli.engine.prune.latency_table`, kept in the run folder), and the greedy choice spends
the milliseconds between the input's latency and the target: a unit that saves many MACs but no time
on the runtime (per-layer overhead) is no longer a cheap cut. The planned model is then timed as a
whole (cuts do not add up exactly); while it is still above the target the budget grows as above.
The plan records the MACs fraction it reaches, which the steps then aim at (``macs_fraction``).

**Residual blocks** (``--unit block`` or ``conv+block``) are units like any other: the scan removes
each alone, and the greedy choice weighs its loss per cost saved against the width cuts'. A block is
all or nothing, so the planned blocks, cheapest first, go one by one as the share rises (block ``i``
of ``n`` once ``f >= (i + 1) / n``). Unit indices are the input model's; a model that has lost the
plan's first ``k`` blocks (told by its layer count) has its indices mapped through the same removal
before its widths are cut.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolor_cli.engine.deploy.runtime_latency import runtime_latency_ms
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.model.summary import ConvMacs
from yolor_cli.engine.prune.blocks import block_at, remove_blocks
from yolor_cli.engine.prune.latency_table import LatencyTable, unit_latency_table
from yolor_cli.engine.prune.pruning import ChannelPruner, conv_of, prune_global
from yolor_cli.engine.prune.request import (
    DEFAULT_SENSITIVITY_AMOUNTS,
    AutoPruneRequest,
    GlobalTarget,
    SensitivityRequest,
)
from yolor_cli.engine.prune.sensitivity import JSON_NAME, run_sensitivity
from yolor_cli.engine.prune.units import BLOCK, CHANNELS, PruneUnit, prune_unit
from yolor_cli.engine.reporting import Reporter

SCAN_FOLDER = "sensitivity"
PLAN_NAME = "allocation.json"
MAX_AMOUNT = 0.9  # no unit loses more of its channels: beyond it layers collapse
SCALE_LIMIT = 3.0  # the planned amounts may be scaled up to this factor to land on the target
BISECTION_STEPS = 14
TOLERANCE = 0.02  # a step's MACs within 2 % of its share end the search
BUDGET_ROUNDS, BUDGET_GROWTH = 8, 1.25  # how often, and by how much, the plan's budget may grow


@dataclass(frozen=True)
class PlannedCut:
    unit: PruneUnit
    amount: float  # of the unit's original channels, after scaling
    width: int  # the unit's original width (its convs are coupled, so they share it)


COST_AXES = ("macs", "ms")


@dataclass(frozen=True)
class Plan:
    cuts: list[PlannedCut]
    scale: float
    cost: str = "macs"  # what the greedy choice saved: MACs, or milliseconds on the run's --runtime
    macs_fraction: float | None = None  # the input's MACs the whole plan keeps (the steps' target, for "ms")
    planned_ms: float | None = None  # the planned model timed on the runtime (for "ms")
    layers: int | None = None  # the input model's module count (blocks removed are told by it)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "cost": self.cost,
            "macs_fraction": self.macs_fraction,
            "planned_ms": self.planned_ms,
            "layers": self.layers,
            "cuts": [
                {
                    "unit": cut.unit.name,
                    "kind": cut.unit.kind,
                    "convs": list(cut.unit.convs),
                    "amount": cut.amount,
                    "width": cut.width,
                }
                for cut in self.cuts
            ],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Plan:
        cuts = [
            PlannedCut(
                PruneUnit(row["unit"], tuple(row["convs"]), row.get("kind", CHANNELS)),
                float(row["amount"]),
                int(row["width"]),
            )
            for row in values["cuts"]
        ]
        fraction, planned = values.get("macs_fraction"), values.get("planned_ms")
        return cls(
            cuts,
            float(values["scale"]),
            str(values.get("cost", "macs")),
            None if fraction is None else float(fraction),
            None if planned is None else float(planned),
            values.get("layers"),
        )


@dataclass(frozen=True)
class Level:
    amount: float
    drop: float  # mAP50-95 lost, a rise counted as none
    saved: float  # MACs saved, or milliseconds saved on a runtime (the plan's cost axis)


@dataclass(frozen=True)
class ScanLevels:
    levels: dict[str, list[Level]]  # each unit's, in rising amount, the unpruned level first
    units: dict[str, PruneUnit]
    base_macs: int  # the unpruned model's MACs at the scan's image size: the unit of every ``saved``


def read_scan(path: Path) -> ScanLevels:
    """A scan's json as levels per unit."""
    payload = json.loads(path.read_text())
    levels: dict[str, list[Level]] = {}
    units: dict[str, PruneUnit] = {}
    for row in payload["trials"]:
        units[row["unit"]] = PruneUnit(row["unit"], tuple(row["convs"]), row.get("kind", CHANNELS))
        levels.setdefault(row["unit"], [Level(0.0, 0.0, 0)]).append(
            Level(float(row["amount"]), max(float(row["map_drop"]), 0.0), int(row["macs_saved"]))
        )
    ordered = {name: sorted(rows, key=lambda level: level.amount) for name, rows in levels.items()}
    return ScanLevels(ordered, units, int(payload["base"]["macs"]))


def levels_in_ms(scan: ScanLevels, table: LatencyTable) -> dict[str, list[Level]]:
    """The scan's levels with each saving in milliseconds on the table's runtime instead of MACs. A
    cut timed no faster than the model saves nothing (so the greedy choice never buys it alone), and
    a level is never counted as saving less than the one below it (timing noise)."""
    levels: dict[str, list[Level]] = {}
    for name, rows in scan.levels.items():
        saved = 0.0
        converted = [rows[0]]
        for level in rows[1:]:
            saved = max(saved, table.saved_ms(name, level.amount) or 0.0)
            converted.append(Level(level.amount, level.drop, saved))
        levels[name] = converted
    return levels


def greedy_amounts(levels: dict[str, list[Level]], wanted_saving: float) -> dict[str, float]:
    """Move the unit whose next level costs least (extra loss per extra unit saved: a MAC or a
    millisecond) up one level at a time, until the savings add up to ``wanted_saving``; every unit may
    be used up."""
    position = dict.fromkeys(levels, 0)
    saved = 0
    while saved < wanted_saving:
        best, best_cost = None, math.inf
        for name, at in position.items():
            if at + 1 >= len(levels[name]):
                continue
            here, nxt = levels[name][at], levels[name][at + 1]
            gain = nxt.saved - here.saved
            if gain <= 0:
                continue
            cost = max(nxt.drop - here.drop, 0.0) / gain
            if cost < best_cost:
                best, best_cost = name, cost
        if best is None:
            break
        here, nxt = levels[best][position[best]], levels[best][position[best] + 1]
        saved += nxt.saved - here.saved
        position[best] += 1
    return {name: levels[name][at].amount for name, at in position.items() if at}


def _unit_width(model: DarknetModel, unit: PruneUnit) -> int:
    return 0 if unit.kind == BLOCK else conv_of(model, unit.convs[0]).out_channels


def _in_removal_order(cuts: list[PlannedCut], scan: ScanLevels) -> list[PlannedCut]:
    """The width cuts as they were, then the blocks cheapest (loss per cost saved) first: the order in
    which the steps remove them."""

    def cost(cut: PlannedCut) -> float:
        removed = scan.levels[cut.unit.name][-1]
        return removed.drop / removed.saved if removed.saved > 0 else math.inf

    widths = [cut for cut in cuts if cut.unit.kind == CHANNELS]
    return widths + sorted((cut for cut in cuts if cut.unit.kind == BLOCK), key=cost)


def blocks_at(share: float, count: int) -> int:
    """How many of ``count`` planned blocks go at ``share``: block ``i`` once ``share >= (i + 1) / count``."""
    return min(count, math.floor(share * count + 1e-9)) if count else 0


def _kept_layers(layers: int, blocks: list[PlannedCut]) -> dict[int, int]:
    """Input index -> index once ``blocks`` are removed from a model of ``layers`` modules."""
    gone = {layer for cut in blocks for layer in cut.unit.layers}
    return {old: new for new, old in enumerate(i for i in range(layers) if i not in gone)}


def _blocks_removed(model: DarknetModel, blocks: list[PlannedCut], layers: int) -> int:
    """How many of the plan's first blocks ``model`` (once the input, of ``layers`` modules) has lost."""
    missing, removed = layers - len(model.module_list), 0
    while missing > 0 and removed < len(blocks):
        missing -= len(blocks[removed].unit.layers)
        removed += 1
    if missing:
        raise YolorError(
            f"the model has {len(model.module_list)} modules, which no prefix of the plan's blocks removed "
            f"from the input's {layers}",
            hint="a run's models come from its own steps; start a new run for another model",
        )
    return removed


def rounded_width(width: float, round_to: int) -> int:
    """``width`` to the nearest multiple of ``round_to`` (at least one multiple; 1 leaves it whole)."""
    return max(round_to, round_to * round(width / round_to))


def prune_towards(
    model: DarknetModel,
    cuts: list[PlannedCut],
    share: float,
    method: str,
    round_to: int = 1,
    layers: int | None = None,
) -> DarknetModel:
    """A copy of ``model`` with the plan's first ``blocks_at(share)`` blocks removed and every planned
    width unit cut to ``width x (1 - amount x share)`` channels, rounded to a multiple of ``round_to``
    (a unit already at or below that width, or a block already removed, is left alone). ``layers``:
    the input's module count, which the plan's indices refer to (None: ``model`` is the input)."""
    blocks = [cut for cut in cuts if cut.unit.kind == BLOCK]
    layers = len(model.module_list) if layers is None else layers
    done = _blocks_removed(model, blocks, layers) if blocks else 0
    wanted_blocks = max(done, blocks_at(share, len(blocks)))
    if wanted_blocks > done:
        now = _kept_layers(layers, blocks[:done])
        model = remove_blocks(model, [block_at(model, now[cut.unit.shortcut]) for cut in blocks[done:wanted_blocks]])
    else:
        model = copy.deepcopy(model)
    index = _kept_layers(layers, blocks[:wanted_blocks])
    if all(cut.unit.kind == BLOCK for cut in cuts):
        return model
    pruner = ChannelPruner(model, method=method)
    for cut in cuts:
        convs = tuple(index[i] for i in cut.unit.convs if i in index) if cut.unit.kind == CHANNELS else ()
        if not convs:  # a block, or a width unit whose convs went with a block
            continue
        unit = PruneUnit(cut.unit.name, convs)
        wanted = rounded_width(cut.width * (1 - min(cut.amount * share, MAX_AMOUNT)), round_to)
        now = _unit_width(pruner.model, unit)
        if wanted < now:
            # int(amount x now) channels go: aim just above the count so that the floor lands on it
            prune_unit(pruner, unit, min((now - wanted + 0.5) / now, 0.999))
    return pruner.model


def _bisect(low: float, high: float, macs_at: Callable[[float], int], wanted: int) -> tuple[float, int]:
    """The share in [low, high] whose MACs are closest to ``wanted`` (MACs fall as the share rises)."""
    best = (high, macs_at(high))
    if best[1] > wanted:
        return best
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        macs = macs_at(middle)
        if abs(macs - wanted) < abs(best[1] - wanted) or (macs <= wanted and best[1] > wanted):
            best = (middle, macs)
        if abs(macs / wanted - 1) <= TOLERANCE:
            break
        low, high = (middle, high) if macs > wanted else (low, middle)
    return best


class SensitivityAllocation:
    """The plan of one run folder, made on first use (scan, greedy choice, scaling) and then read back."""

    def __init__(self, run_dir: Path, request: AutoPruneRequest, target_fraction: float, reporter: Reporter) -> None:
        self.run_dir, self.request, self.target, self.reporter = run_dir, request, target_fraction, reporter
        self._plan: Plan | None = None

    def plan(self) -> Plan:
        if self._plan is None:
            path = self.run_dir / PLAN_NAME
            self._plan = Plan.from_dict(json.loads(path.read_text())) if path.exists() else self._make_plan(path)
        return self._plan

    def _scan(self) -> Path:
        scan_json = self.run_dir / SCAN_FOLDER / JSON_NAME
        if not scan_json.exists():
            request = self.request
            self.reporter.info(f"Scanning each {request.unit} unit's sensitivity (once per run; kept in sensitivity/)")
            run_sensitivity(
                SensitivityRequest(
                    weights=Path(request.weights),
                    data=Path(request.data),
                    cfg=request.cfg,
                    amounts=DEFAULT_SENSITIVITY_AMOUNTS,
                    unit=request.unit,
                    method=request.method,
                    img_size=request.img_size,
                    device=request.device,
                    output=self.run_dir / SCAN_FOLDER,
                    trust_pickle=request.trust_pickle,
                ),
                self.reporter,
            )
        return scan_json

    def _make_plan(self, path: Path) -> Plan:
        scan = read_scan(self._scan())
        request = self.request
        model = load_model(cfg=request.cfg, weights=request.weights, trust_pickle=request.trust_pickle).model.eval()
        plan = self._plan_ms(scan, model) if request.target_latency_ms is not None else self._plan_macs(scan, model)
        payload = json.dumps(plan.to_dict(), indent=2).encode()
        atomic_write(path, lambda stream: stream.write(payload))
        return plan

    def _plan_ms(self, scan: ScanLevels, model: DarknetModel) -> Plan:
        """The plan by mAP lost per millisecond saved on ``--runtime`` (see the module docstring)."""
        request = self.request
        assert request.target_latency_ms is not None
        table = unit_latency_table(
            model,
            list(scan.units.values()),
            DEFAULT_SENSITIVITY_AMOUNTS,
            runtime=request.runtime,
            img_size=request.img_size,
            folder=self.run_dir,
            reporter=self.reporter,
        )
        levels = levels_in_ms(scan, table)
        budget = table.base_ms - request.target_latency_ms
        base_macs = ConvMacs(model)()
        cuts: list[PlannedCut] = []
        planned_ms = table.base_ms
        previous: dict[str, float] | None = None
        for _ in range(BUDGET_ROUNDS):
            amounts = greedy_amounts(levels, budget)
            if not amounts:
                raise YolorError(
                    f"no cut in the latency table saves time on {request.runtime}",
                    hint="aim at a MACs target (--target-macs), or use --allocate global",
                )
            if amounts == previous:  # every cut that saves time is planned already
                break
            previous = amounts
            cuts = _in_removal_order(
                [
                    PlannedCut(scan.units[name], amount, _unit_width(model, scan.units[name]))
                    for name, amount in amounts.items()
                ],
                scan,
            )
            planned_ms = runtime_latency_ms(
                prune_towards(model, cuts, 1.0, request.method, request.round_to), request.img_size, request.runtime
            )
            if planned_ms <= request.target_latency_ms * (1 + TOLERANCE):
                break
            budget *= BUDGET_GROWTH  # the cuts together saved less than the table's sum: plan more
        fraction = ConvMacs(prune_towards(model, cuts, 1.0, request.method, request.round_to))() / base_macs
        return Plan(cuts, 1.0, cost="ms", macs_fraction=fraction, planned_ms=planned_ms, layers=len(model.module_list))

    def _plan_macs(self, scan: ScanLevels, model: DarknetModel) -> Plan:
        """The plan by mAP lost per MAC saved, scaled to land on the run's MACs target."""
        request = self.request
        # The budget in the scan's own MACs (counted at --img-size); the scaling below compares
        # ConvMacs counts at its probe size, for which only the ratio to the unpruned count matters.
        budget = (1 - self.target) * scan.base_macs
        wanted = round(self.target * ConvMacs(model)())
        for _ in range(BUDGET_ROUNDS):
            amounts = greedy_amounts(scan.levels, round(budget))
            if not amounts:
                raise YolorError("the sensitivity scan found no cut to plan", hint="use --allocate global")
            raw = _in_removal_order(
                [
                    PlannedCut(scan.units[name], amount, _unit_width(model, scan.units[name]))
                    for name, amount in amounts.items()
                ],
                scan,
            )

            def macs_at(scale: float, cuts: list[PlannedCut] = raw) -> int:
                return ConvMacs(prune_towards(model, cuts, scale, request.method, request.round_to))()

            scale, macs = _bisect(0.0, SCALE_LIMIT, macs_at, wanted)
            if macs <= wanted * (1 + TOLERANCE) or len(amounts) == len(scan.levels) and scale == SCALE_LIMIT:
                break
            # Cuts made together save less than the sum of their savings alone (a conv that loses both
            # inputs and outputs): widen the plan to more units rather than deepen the same ones.
            budget *= BUDGET_GROWTH
        blocks = [cut for cut in raw if cut.unit.kind == BLOCK]
        return Plan(
            [
                PlannedCut(cut.unit, min(cut.amount * scale, MAX_AMOUNT), cut.width)
                for cut in raw
                if cut.unit.kind == CHANNELS
            ]
            + blocks[: blocks_at(scale, len(blocks))],  # the blocks the scaled plan removes
            scale,
            layers=len(model.module_list),
        )

    def macs_fraction(self) -> float | None:
        """The input's MACs fraction a latency plan reaches (what the steps aim at), None for a MACs plan."""
        return self.plan().macs_fraction

    def prune(self, model: DarknetModel, relative: float) -> DarknetModel:
        """``model`` brought to ``relative`` x its MACs along the plan, the rest (if any) globally."""
        plan = self.plan()
        current = ConvMacs(model)()
        wanted = round(relative * current)
        method, round_to, layers = self.request.method, self.request.round_to, plan.layers

        def macs_at(share: float) -> int:
            return ConvMacs(prune_towards(model, plan.cuts, share, method, round_to, layers))()

        share, macs = _bisect(0.0, 1.0, macs_at, wanted)
        pruned = prune_towards(model, plan.cuts, share, method, round_to, layers)
        if macs / wanted - 1 > TOLERANCE:
            self.reporter.warning(
                f"the sensitivity plan reaches {macs / current:.3f} of the current MACs, not {relative:.3f}: "
                "the global ranking takes the rest"
            )
            pruned = prune_global(pruned, GlobalTarget(target_macs=wanted / macs), method=self.request.method)
        return pruned
