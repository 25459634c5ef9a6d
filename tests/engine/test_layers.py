"""Imports inside the engine go one way (docs: this order is the architecture's, enforced here).

Stages, lowest first; a module may import its own stage and the ones below, never one above:

0. shared leaves: errors, files, boxes, runtime, config, reporting, runs, quiet_libs, tracking (import no stage)
1. model        (Darknet cfgs, layers, checkpoints)
2. data         (datasets, VOC conversion, loaders)
3. train, evaluate, infer
4. prune, deploy, tune, report

and no two modules import each other, directly or through others (lazy imports inside functions
count too: a cycle through them is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "yolor_cli" / "engine"
PACKAGE = "yolor_cli.engine"
STAGES = {"model": 1, "data": 2, "train": 3, "evaluate": 3, "infer": 3, "prune": 4, "deploy": 4, "tune": 4, "report": 4}
LEAF = 0  # every other top-level module of the engine


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join((PACKAGE, *parts))


def _stage(module: str) -> int:
    top = module.removeprefix(PACKAGE + ".").split(".")[0]
    return STAGES.get(top, LEAF)


def _imports() -> dict[str, set[str]]:
    """Each engine module and the engine modules it imports (anywhere in its body)."""
    modules = {_module_name(path): path for path in ENGINE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {target for target in targets if target in modules and target != name}
        graph[name] = found
    return graph


def test_no_module_imports_a_higher_stage() -> None:
    upward = sorted(
        f"{module} (stage {_stage(module)}) imports {target} (stage {_stage(target)})"
        for module, targets in _imports().items()
        for target in targets
        if _stage(target) > _stage(module)
    )
    assert upward == []


def test_the_engine_has_no_import_cycles() -> None:
    graph = _imports()
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                # a package's __init__ importing its own submodules is not a cycle of the kind meant here
                cycle = path[path.index(target) :] + [target]
                if not all(step.startswith(cycle[0] + ".") or step == cycle[0] for step in cycle):
                    cycles.append(" -> ".join(cycle))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
