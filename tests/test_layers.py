"""The import contract: data flows one way through the package, and no module imports upward.

Layers, lowest first (a module may import its own layer and those below):
  core      the native kernels' faces, errors, argument checks, models, metrics
  format    the index's on-disk form (layout, store, manifest, the protocol's types)
  compute   what reads a mapped index (query encoder, ranking, moments, results)
  views     the index protocol's implementations (single, sharded, batching)
  tools     the writers and checkers of index folders (ingest, rebuild, check)
  dialogue  sessions, routing, responders (and the IVCR-200K evaluation that runs them)
  server    the HTTP face
  faces     the command line and the demo
Every import that runs counts, at module level or inside a function: a lazy import still couples
the modules (imports under ``if TYPE_CHECKING:`` never run and do not count). The graph has no
cycles.
"""
from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "ivcr_engine"

LAYERS = [
    ("core", ["ivcr_engine", "ivcr_engine._core", "ivcr_engine.errors", "ivcr_engine.checks", "ivcr_engine.blas",
              "ivcr_engine.corpus", "ivcr_engine.span", "ivcr_engine.native", "ivcr_engine.decode", "ivcr_engine.models*",
              "ivcr_engine.eval", "ivcr_engine.eval.metrics", "ivcr_engine.eval.spoken"]),
    ("format", ["ivcr_engine.index.layout", "ivcr_engine.index.protocol", "ivcr_engine.index.partition",
                "ivcr_engine.index.words", "ivcr_engine.index.shared_connection", "ivcr_engine.index.store_lexical",
                "ivcr_engine.index.store",
                "ivcr_engine.index.store_writer", "ivcr_engine.index.manifest"]),
    ("compute", ["ivcr_engine.index.first_stage", "ivcr_engine.index.folded_rows", "ivcr_engine.index.inverted_lists",
                 "ivcr_engine.index.mapped", "ivcr_engine.index.query_encoder", "ivcr_engine.index.ranking",
                 "ivcr_engine.index.lexicon",
                 "ivcr_engine.index.results", "ivcr_engine.index.image_query"]),
    ("views", ["ivcr_engine.index.single", "ivcr_engine.index.sharded", "ivcr_engine.index.batching",
               "ivcr_engine.index.ray_cluster"]),
    ("tools", ["ivcr_engine.index", "ivcr_engine.index.ingest", "ivcr_engine.index.inputs", "ivcr_engine.index.video_encoder",
               "ivcr_engine.index.onscreen", "ivcr_engine.index.ray_ingest", "ivcr_engine.index.rebuild_text",
               "ivcr_engine.index.check"]),
    ("dialogue", ["ivcr_engine.dialogue*", "ivcr_engine.eval.ivcr200k", "ivcr_engine.eval.ivcr200k_authors"]),
    ("server", ["ivcr_engine.server*"]),
    ("faces", ["ivcr_engine.cli", "ivcr_engine.demo", "ivcr_engine.__main__"]),
]


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for p in package.rglob("*.py"):
        parts = p.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    out["ivcr_engine._core"] = package  # the native module (built, not a .py file)
    return out


def layer_of(name: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if name == m or (m.endswith("*") and (name == m[:-1] or name.startswith(m[:-1] + "."))):
                return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every package module each module imports (``from a import b`` counts b when it is a module)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        if path.suffix != ".py":
            continue
        pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # never runs: annotations only
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1])
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module
                named = [f"{mod}.{a.name}" for a in node.names]
                # "from . import first_stage" names modules, not the package's own contents
                targets = named if all(n in mods for n in named) else [mod] + named
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[m] |= {t for t in targets if t in mods and t != m}
    return graph


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def upward_imports(package: Path = PACKAGE) -> list[str]:
    out = []
    for m, targets in imports(modules(package)).items():
        for t in targets:
            if layer_of(t) > layer_of(m):
                out.append(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})")
    return sorted(out)


def a_cycle(package: Path = PACKAGE) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    graph = imports(modules(package))
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_every_module_has_a_layer_and_nothing_imports_upward():
    assert upward_imports() == []


def test_the_import_graph_has_no_cycles():
    cycle = a_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_contract_sees_an_upward_import_and_a_cycle(tmp_path):
    """The checks above fail on an index module that imports the server, which imports it back."""
    pkg = tmp_path / "ivcr_engine"
    (pkg / "index").mkdir(parents=True)
    (pkg / "server").mkdir()
    for f in ("__init__.py", "index/__init__.py", "server/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "index" / "store.py").write_text("def later():\n    from ..server import app\n")
    (pkg / "server" / "app.py").write_text("from ..index import store\n")
    assert upward_imports(pkg) == ["ivcr_engine.index.store (format) imports ivcr_engine.server.app (server)"]
    assert a_cycle(pkg) == ["ivcr_engine.index.store", "ivcr_engine.server.app", "ivcr_engine.index.store"]
