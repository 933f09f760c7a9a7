"""The package's import graph: no module imports itself back through others (top-level or
function-level imports alike), and ``import dynamo_lightning`` loads no Lightning."""

from __future__ import annotations

import subprocess
import sys

import grimp
from paths import REPO


def strongly_connected(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(adjacency):
        if root in index:
            continue
        work = [(root, iter(sorted(adjacency[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(adjacency[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_strongly_connected_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_package_modules() -> None:
    graph = grimp.build_graph("dynamo_lightning")
    modules = set(graph.modules)
    adjacency = {m: set(graph.find_modules_directly_imported_by(m)) & modules
                 for m in modules}
    assert strongly_connected(adjacency) == []


def test_importing_the_package_loads_no_lightning_nor_torch() -> None:
    """So ``dynamo --help`` and ``dynamo --version`` answer at once (torch alone takes
    seconds to import)."""
    code = ("import sys, dynamo_lightning, dynamo_lightning.cli; print(sorted({m.split('.')[0] "
            "for m in sys.modules} & {'lightning', 'pytorch_lightning', 'torch', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tests_mirror_the_package_tree() -> None:
    """Every test folder is a package room (``tests/analysis`` ↔ ``dynamo_lightning/analysis``)
    and top-level tests cover top-level modules or the package as a whole."""
    tests = REPO / "tests"
    package = REPO / "dynamo_lightning"
    rooms = {p.name for p in tests.iterdir() if p.is_dir() and p.name not in ("conf",)
             and not p.name.startswith((".", "__"))}
    assert rooms and all((package / room / "__init__.py").is_file() for room in rooms), rooms
    for room in rooms:
        assert list((tests / room).glob("test_*.py")), room
