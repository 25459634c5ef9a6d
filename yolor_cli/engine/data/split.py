"""Train/val/test splits: deterministic for a seed, disjoint, covering, and stratified so each
class with enough images appears in val (and test) while train keeps at least one of them.

The fractions mean what they say: ``val=0.1`` puts 10 % of the images in val. (The old
``makeTXT.py`` inverted this and put 90 % in "train" through its else-branch.)
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Set
from dataclasses import dataclass

from yolor_cli.engine.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]

    @property
    def trainval(self) -> list[str]:
        return sorted(self.train + self.val)

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test, "trainval": self.trainval}


def _quota(fraction: float, count: int) -> int:
    """Images for a held-out split: the rounded share, at least one when asked for and possible."""
    if fraction <= 0:
        return 0
    return max(1, round(fraction * count)) if count >= 2 else 0


def stratified_split(classes_by_stem: Mapping[str, Set[str]], *, val: float, test: float, seed: int) -> Split:
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise DataError(f"--val {val} and --test {test} must be fractions in [0, 1) that leave images for train")
    if not classes_by_stem:
        raise DataError("there are no usable images to split")
    rng = random.Random(seed)
    order = sorted(classes_by_stem)
    rng.shuffle(order)
    quotas = {"val": _quota(val, len(order)), "test": _quota(test, len(order))}
    if sum(quotas.values()) >= len(order):
        quotas["test"] = max(0, len(order) - 1 - quotas["val"])
        quotas["val"] = min(quotas["val"], len(order) - 1)

    assigned: dict[str, str] = {}
    used: Counter[str] = Counter()
    images_of: dict[str, list[str]] = defaultdict(list)
    for stem in order:
        for name in classes_by_stem[stem]:
            images_of[name].append(stem)
    held_out = [name for name in ("val", "test") if quotas[name]]
    # Rarest classes first: they have the fewest images to choose from.
    for name in sorted(images_of, key=lambda c: (len(images_of[c]), c)):
        for split_name in held_out:
            stems = images_of[name]
            if used[split_name] >= quotas[split_name] or any(assigned.get(s) == split_name for s in stems):
                continue
            free = [s for s in stems if s not in assigned]
            if len(free) >= 2:  # keep at least one image of the class for train
                assigned[free[0]] = split_name
                used[split_name] += 1
    # Reserve one image of every class for train before the quotas take the rest.
    for name in sorted(images_of, key=lambda c: (len(images_of[c]), c)):
        if not any(assigned.get(s) == "train" for s in images_of[name]):
            free = [s for s in images_of[name] if s not in assigned]
            if free:
                assigned[free[0]] = "train"
    for stem in order:
        if stem in assigned:
            continue
        target = next((name for name in held_out if used[name] < quotas[name]), "train")
        assigned[stem] = target
        used[target] += 1
    by_split: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for stem, split_name in assigned.items():
        by_split[split_name].append(stem)
    return Split(**{name: sorted(stems) for name, stems in by_split.items()})
