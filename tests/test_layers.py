"""The import direction (floor, rooms, roof), held by an AST walk over every module: top-level and lazy imports.

- the floor (errors, registry, value parsing, records, paths, statistics, measurement) imports nothing of ours but
  the floor;
- each room imports the floor, itself and the rooms ROOMS lists for it, nothing else: kernels nothing of ours at
  all; extensions the floor and kernels; evals and reports the floor only; the runners what they drive (kernels,
  extensions, the model's profile); the experiment loop the rooms below it;
- nothing imports the CLI (the roof), which may import anything;
- every module belongs to a declared room (a new room is declared here, with what it may import);
- no module imports another module's private name (`from x import _y`).

With these rules there is no import circle between rooms: ROOMS is checked to be acyclic.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("harness", "extensions", "kernels", "evals", "reports")
FLOOR = {"harness.errors", "harness.registry", "harness.config", "harness.records", "harness.paths", "harness.stats",
         "harness.measure"}
ROOF = "harness.cli"
BARE = {"kernels"}  # rooms that import nothing of ours, not even the floor (usable outside longctx)
ROOMS = {  # room → the rooms it may import besides the floor and itself
    "kernels": set(),
    "extensions": {"kernels"},
    "evals": set(),
    "reports": set(),
    "harness": set(),
    "harness.models": set(),
    "harness.zoo": set(),
    "harness.manifest": set(),
    "harness.profile": {"kernels"},
    "harness.runners": {"kernels", "extensions", "harness.profile"},
    "harness.support": {"extensions", "harness.profile", "harness.runners"},
    "harness.memory": {"kernels", "extensions", "harness.profile", "harness.runners"},
    "harness.baselines": {"evals"},
    "harness.experiment": {"kernels", "extensions", "evals", "harness.models", "harness.manifest", "harness.profile",
                           "harness.runners", "harness.support", "harness.memory"},
    "harness.search": {"harness.experiment", "harness.manifest"},
    "harness.sweep": {"evals", "harness.runners", "harness.experiment", "harness.search", "harness.memory"},
    "harness.integrations": {"extensions", "evals", "harness.models", "harness.profile", "harness.runners",
                             "harness.support", "harness.experiment"},
    "harness.bench": {"extensions", "evals", "harness.models", "harness.manifest", "harness.profile",
                      "harness.runners", "harness.memory", "harness.experiment"},
}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def room(module: str) -> str:
    """The room of a module: the floor module itself, the roof, a harness sub-package or module, a top package."""
    parts = module.split(".")
    if module in FLOOR or _in(module, ROOF):
        return ROOF if _in(module, ROOF) else module
    return ".".join(parts[:2]) if parts[0] == "harness" and len(parts) > 1 else parts[0]


def _imports(source: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import of ours in `source`, however deeply nested."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] in OURS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] in OURS:
            out.append((node.module, [a.name for a in node.names]))
    return out


def _allowed(module: str, target: str) -> bool:
    here, there = room(module), room(target)
    if here == ROOF:
        return True
    if here in FLOOR:
        return there in FLOOR
    if here in BARE:
        return there == here
    return there in FLOOR or there == here or there in ROOMS.get(here, set())


def violations(module: str, source: str) -> set[tuple[str, str]]:
    """(module, the module or private name it should not import) for one module's source."""
    found = set()
    if room(module) not in ROOMS and room(module) not in FLOOR and room(module) != ROOF:
        found.add((module, "an undeclared room"))
    for target, names in _imports(source):
        if _in(target, ROOF) and not _in(module, ROOF):
            found.add((module, ROOF))
        elif not _allowed(module, target):
            found.add((module, target))
        found |= {(module, n) for n in names if n.startswith("_") and not n.startswith("__") and target != module}
    return found


def _tree() -> dict[str, str]:
    return {_module(p): p.read_text() for pkg in OURS for p in (ROOT / pkg).rglob("*.py")}


def test_the_tree_keeps_its_layers():
    found = set()
    for module, source in _tree().items():
        found |= violations(module, source)
    assert not sorted(found), f"imports against the layers: {sorted(found)}"


def test_the_rooms_have_no_circle():
    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(r == goal or (r not in seen and reaches(r, goal, seen | {r})) for r in ROOMS.get(start, ()))

    assert not [r for r in ROOMS if reaches(r, r, set())]
    assert all(r in ROOMS for deps in ROOMS.values() for r in deps)


def test_a_planted_violation_is_caught():
    assert violations("kernels.spec", "def f():\n    from harness.errors import UserError\n") == \
        {("kernels.spec", "harness.errors")}
    assert violations("harness.errors", "import harness.runners\n") == {("harness.errors", "harness.runners")}
    assert violations("reports.html", "from extensions import EXTENSIONS\n") == {("reports.html", "extensions")}
    assert violations("harness.sweep", "from harness.cli import main\n") == {("harness.sweep", ROOF)}
    assert violations("harness.sweep", "from harness.memory import _meta_model\n") == \
        {("harness.sweep", "_meta_model")}
    assert violations("extensions.rope", "from harness.support import x\n") == \
        {("extensions.rope", "harness.support")}
    # the circle this walk was written for: memory → runners → memory
    assert violations("harness.runners.hf", "from harness.memory import PeakMemory\n") == \
        {("harness.runners.hf", "harness.memory")}
    assert violations("evals.lm_eval", "from harness.experiment import prepare\n") == \
        {("evals.lm_eval", "harness.experiment")}
    assert violations("harness.newroom", "") == {("harness.newroom", "an undeclared room")}
    assert violations("harness.cli.grid", "from harness.sweep import dump\n") == set()
