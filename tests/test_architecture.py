"""The package's shape: layers import downwards only, no cycles (imports inside functions count),
modules of a readable size, and nothing from the tests or the emulator in production code.

The imports are read from the source (ast), so a lazy import inside a function counts as much as
one at the top of a module: it is a dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dropbox_team_log

PACKAGE = Path(dropbox_team_log.__file__).parent
ROOT = "dropbox_team_log"
MAX_LINES = 500

#: Who may import whom: a module imports modules of a lower rank, or of its own subpackage.
#: Data flows client -> transform -> sync -> dataset -> analytics; tasks and cli sit on top.
RANKS = {
    "settings": 0,
    "schema": 0,
    "timeutil": 0,
    "errors": 0,
    "display": 0,
    "team_registry": 1,
    "deployment": 2,
    "client": 2,
    "transform": 3,
    "dataset": 4,
    "sync": 5,
    "analytics": 6,
    "hooks": 7,
    "notifications": 7,
    "get_provider_info": 7,
    "tasks": 8,
    "cli": 8,
    "web": 9,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """Every module of the package `name` imports, anywhere in its source."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".rstrip(".")
            # `from package import module` imports that module
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found.update(target for target in targets if target in MODULES and target != name)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def room(name: str) -> str:
    """The top-level module or subpackage a module belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_room_has_a_rank():
    assert {room(name) for name in MODULES} - {""} == set(RANKS)


def test_imports_go_down_the_layers():
    wrong = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if room(target)  # the package's __init__ holds only the version
        and room(name) != room(target)
        and RANKS[room(name)] <= RANKS[room(target)]
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_counting_imports_inside_functions():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by job"


def top_level_imports(name: str) -> set[str]:
    """The top-level packages a module imports (absolute imports, anywhere in it)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            roots.add((node.module or "").split(".")[0])
    return roots


@pytest.mark.parametrize("name", sorted(MODULES))
def test_production_code_imports_no_tests_and_no_emulator(name):
    roots = top_level_imports(name)
    assert not roots & {"tests", "dropbox_emulator", "demo", "bench"}, f"{name}: {roots}"


def test_settings_is_constants_only():
    """DAG files and the provider metadata import it at parse time: it must cost nothing."""
    tree = ast.parse(MODULES[f"{ROOT}.settings"].read_text())
    for node in tree.body:
        assert isinstance(node, ast.Assign | ast.AnnAssign | ast.Expr), ast.dump(node)[:80]


#: Where Airflow may be imported: the rest of the package runs and is tested without it.
AIRFLOW_ROOMS = {"hooks", "notifications", "tasks", "cli", "deployment", "web"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_airflow_stays_in_the_rooms_that_talk_to_it(name):
    if "airflow" in top_level_imports(name):
        assert room(name) in AIRFLOW_ROOMS, f"{name} imports Airflow"
