"""The code's layout: packages that say what they are, and imports that only go one way.

The import graph is read from the source (every import statement, also those inside functions,
except `if TYPE_CHECKING:` blocks, which never run), so a lazy import cannot hide a circle.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _modules() -> dict[str, Path]:
    found = {}
    for path in [*REPO.glob("core/**/*.py"), *REPO.glob("app/**/*.py")]:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _runtime_imports(tree: ast.AST):
    """Every import node outside `if TYPE_CHECKING:` blocks."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package import counts as its __init__)."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                 for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_lazy_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_core_or_app():
    assert cycles(import_graph()) == []


def test_core_has_no_loose_modules():
    loose = sorted(p.name for p in (REPO / "core").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"core/ keeps its modules in packages that say what they are, found {loose}"


def test_the_app_imports_only_the_planning_half_of_jobs():
    graph = import_graph()
    running = {"core.jobs.execution", "core.jobs.foreground", "core.jobs.launch", "core.jobs.worker"}
    reach = {m for name, targets in graph.items() if name.startswith("app") for m in targets}
    assert not reach & running, sorted(reach & running)


def test_layers_import_downwards_only():
    """config and store at the bottom; eval and models never reach up into training, jobs, the CLI or the app."""
    graph = import_graph()
    rules = {"core.config": ("core.data", "core.eval", "core.models", "core.train", "core.stages", "core.jobs",
                             "core.cli", "core.results", "app"),
             "core.store": ("core.eval", "core.models", "core.train", "core.stages", "core.jobs", "core.cli", "app"),
             "core.eval": ("core.train", "core.stages", "core.jobs", "core.cli", "app"),
             "core.jobs": ("core.cli", "app"),
             "core.results": ("core.cli", "app")}
    wrong = [(name, target) for name, targets in graph.items() for layer, above in rules.items()
             if name == layer or name.startswith(layer + ".") for target in targets
             if any(target == a or target.startswith(a + ".") for a in above)]
    assert wrong == []
