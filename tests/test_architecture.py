"""The shape of the package (issue 19), read from the source, no imports executed:

* the phases of one call run in one direction -- options -> plan -> prep -> run -> api --
  and no phase imports a later one, directly or through another module;
* no import cycle between mzsr_fast modules (function-level imports included: a lazy
  import is still a dependency; a ``__main__`` block is not one);
* the leaves stay leaves (tiles imports nothing of mzsr_fast, chain only tiles);
* no module but zssr.py over about 400 lines (mzsr_fast/train/ excluded: the lead's
  training code, outside this rule's owner);
* adapt_and_upscale's body is about 50 lines.

The checks are functions over an import graph, each also run on a small made-up graph that
must fail (a cycle, a later-phase import), so they can fail.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mzsr_fast")
PHASES = ["mzsr_fast.options", "mzsr_fast.plan", "mzsr_fast.prep", "mzsr_fast.run", "mzsr_fast.api"]
MAX_LINES = 420


def _modules() -> dict[str, str]:
    """module name -> file path, for every .py under mzsr_fast/."""
    out = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(d, f)
    return out


def _not_a_dependency(node: ast.If) -> bool:
    """``if TYPE_CHECKING:`` (never runs) or ``if __name__ == "__main__":`` (runs only as a
    script, ``python -m ...``: not when the module is imported)."""
    t = node.test
    if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
        return True
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))


def _imports(mod: str, path: str, known: set[str]) -> set[str]:
    """The mzsr_fast modules ``mod`` imports (anywhere in the file, functions included, but
    under ``if TYPE_CHECKING`` / ``if __name__ == "__main__"``)."""
    tree = ast.parse(open(path).read(), path)
    is_pkg = path.endswith("__init__.py")
    base_parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
    found: set[str] = set()
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _not_a_dependency(node)
            for b in node.body for n in ast.walk(b)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "mzsr_fast":
                    found.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base_parts[:len(base_parts) - node.level + 1]
                src = ".".join(parts + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if src.split(".")[0] != "mzsr_fast":
                continue
            for a in node.names:
                sub = f"{src}.{a.name}"
                found.add(sub if sub in known else src)
    return {m for m in found if m in known and m != mod and m != "mzsr_fast"}


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Modules reachable from ``start`` -> the module that imports each (for messages)."""
    seen, todo = {}, [start]
    while todo:
        n = todo.pop()
        for m in graph.get(n, ()):
            if m not in seen and m != start:
                seen[m] = n
                todo.append(m)
    return seen


def later_phase_imports(graph: dict[str, set[str]], phases: list[str]) -> list[str]:
    """'phase -> later phase (via module)' for every phase that reaches a later one."""
    bad = []
    for i, p in enumerate(phases):
        r = reachable(graph, p)
        for q in phases[i + 1:]:
            if q in r:
                bad.append(f"{p} reaches the later phase {q} (imported by {r[q]})")
    return bad


GRAPH = import_graph()


def test_the_checks_can_fail():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(g) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    g = {"p1": {"x"}, "x": {"p2"}, "p2": set()}
    assert later_phase_imports(g, ["p1", "p2"]) == ["p1 reaches the later phase p2 (imported by x)"]
    assert later_phase_imports(g, ["p2", "p1"]) == []


def test_graph_is_read():
    """The parser sees the real edges (relative imports of both forms, subpackages)."""
    assert "mzsr_fast.plan" in GRAPH["mzsr_fast.api"] and "mzsr_fast.run" in GRAPH["mzsr_fast.api"]
    assert "mzsr_fast.backends.base" in GRAPH["mzsr_fast.backends.cpu"]
    assert "mzsr_fast.chain" in GRAPH["mzsr_fast.backends.cpu"]
    assert "mzsr_fast.reference" in GRAPH["mzsr_fast.backends.base"]  # a function-level import
    assert set(PHASES) <= set(GRAPH)


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_no_phase_imports_a_later_phase():
    assert later_phase_imports(GRAPH, PHASES) == []


def test_leaves():
    assert GRAPH["mzsr_fast.tiles"] == set()
    assert GRAPH["mzsr_fast.chain"] <= {"mzsr_fast.tiles"}
    assert GRAPH["mzsr_fast.reference"] <= {"mzsr_fast.chain"}
    assert not reachable(GRAPH, "mzsr_fast.plan").keys() - {"mzsr_fast.tiles"}, "the planner is pure"
    # the backends import no phase but the planner (its memory figures); the Triton
    # profiler (backends/triton_profile.py) builds its own timing case
    for b in [m for m in GRAPH if m.startswith("mzsr_fast.backends")]:
        assert not GRAPH[b] & (set(PHASES) - {"mzsr_fast.plan"}), b


def test_halo_matches_the_network():
    from mzsr_fast import model, tiles

    assert tiles.HALO == len(model.CHANNELS)


def test_module_sizes():
    big = {m: n for m, p in _modules().items()
           if not m.startswith("mzsr_fast.train") and m != "mzsr_fast.zssr"
           and (n := len(open(p).read().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_adapt_and_upscale_is_short():
    tree = ast.parse(open(os.path.join(ROOT, "api.py")).read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "adapt_and_upscale")
    doc_end = fn.body[0].end_lineno if isinstance(fn.body[0], ast.Expr) else fn.lineno
    body = fn.end_lineno - doc_end
    assert body <= 55, f"adapt_and_upscale body is {body} lines"


@pytest.mark.parametrize("phase", PHASES)
def test_phase_modules_exist(phase):
    assert os.path.isfile(os.path.join(os.path.dirname(ROOT), *phase.split(".")) + ".py")


#: each phase of a call: (module, function) -- docs/architecture.md must name both
PHASE_FUNCTIONS = [("options", "Options"), ("io", "to_internal"), ("plan", "plan"), ("prep", "make_inputs"),
                   ("run", "run"), ("run", "adapt"), ("run", "adapt_tiled"), ("run", "adapt_on_crops"),
                   ("run", "upscale"), ("io", "from_internal"), ("api", "adapt_and_upscale"),
                   ("chain", "forward"), ("chain", "grads")]


@pytest.mark.parametrize("mod,fn", PHASE_FUNCTIONS)
def test_docs_name_every_phase(mod, fn):
    import importlib

    assert callable(getattr(importlib.import_module(f"mzsr_fast.{mod}"), fn))
    doc = open(os.path.join(os.path.dirname(ROOT), "docs", "architecture.md")).read()
    assert f"{mod}.py" in doc and fn in doc, f"docs/architecture.md does not name {mod}.py / {fn}"
