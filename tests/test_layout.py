"""The package's layout is its data flow: each stage imports only itself and the stages before it, nothing imports
in a circle, and `import retokviz` stays light."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "retokviz"

# The stages in the order data flows; a module may import its own rank or a lower one.
RANKS = {
    "_util": 0,
    "images": 1, "ops": 1,
    "methods": 2,
    "patch": 3, "compiled": 3,
    "trace": 4, "models": 4, "data": 4,
    "measure": 5,
    "sweep": 6,
    "views": 7,
    "explorer": 8, "training": 8,
    "tutorial": 9,
}
FACADE = 10   # retokviz/__init__.py: the public names, which nothing inside the package imports back
# A command line (`python -m retokviz.X`, a package's __main__) is a program on top of the library, as timm's
# train.py is: it may use any stage, and no module imports it.


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    parts = module.split(".")
    if parts == ["retokviz"] or parts[-1] == "__main__":
        return FACADE
    return RANKS[parts[1]]


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path) -> set[str]:
    """The retokviz modules `path` imports anywhere in it (at the top or in a function), type-only ones aside."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "retokviz"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "retokviz":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if is_module(full) else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_rank():
    unranked = [name for name in graph() if name != "retokviz" and name.split(".")[1] not in RANKS]
    assert not unranked, f"modules in no stage of RANKS: {unranked}"


def test_imports_go_only_to_the_same_or_an_earlier_stage():
    upward = [f"{name} (rank {rank(name)}) imports {target} (rank {rank(target)})"
              for name, targets in graph().items() for target in sorted(targets)
              if rank(name) < FACADE and rank(target) > rank(name)]
    programs = [f"{name} imports the program {target}" for name, targets in graph().items() for target in targets
                if target.endswith("__main__")]
    upward += programs
    assert not upward, "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A list of modules that import each other in a circle, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            # a package's __init__ importing its own submodules is not a circle: importing a submodule loads the
            # package first, then the submodule, which sees a package already in sys.modules
            if target.startswith(node + "."):
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_modules_import_each_other_in_a_circle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    edges = {"retokviz.patch": {"retokviz.measure.macs"}, "retokviz.measure.macs": {"retokviz.patch"}}
    assert rank("retokviz.measure.macs") > rank("retokviz.patch")
    assert find_cycle(edges) == ["retokviz.measure.macs", "retokviz.patch", "retokviz.measure.macs"]


@pytest.mark.parametrize("heavy", ["matplotlib", "plotly", "ipywidgets", "sklearn", "skimage"])
def test_import_retokviz_loads_no_plotting_widget_or_data_set_library(heavy):
    code = f"import sys, retokviz as rv; rv.EViT; rv.data.patch_mask; sys.exit({heavy!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"import retokviz loaded {heavy}"


@pytest.mark.parametrize("script", sorted(path.stem for path in (PACKAGE.parent / "benchmarks").glob("*.py")))
def test_every_program_beside_the_package_imports(script):
    """The programs in benchmarks/ import only what exists (a module that moved would break them unseen)."""
    code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location({script!r}, "
            f"{str(PACKAGE.parent / 'benchmarks' / (script + '.py'))!r}); module = importlib.util.module_from_spec(spec); "
            f"sys.modules[{script!r}] = module; spec.loader.exec_module(module); assert callable(module.main)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
