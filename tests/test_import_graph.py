"""The layering of docs/architecture.md, checked on the source: no import loop between the
orchestrator's modules, the core never imports a backend (only factory.py, which picks
one), and jobs never import the orchestrator (they run by hand and on ModelArts)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("orchestrator.backends.local", "orchestrator.backends.modelarts")


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in (REPO / package).rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ``known`` that ``name`` imports anywhere (also inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [module, *subs]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph(package: str) -> dict[str, set[str]]:
    known = _modules(package)
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}                       # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [node, dep] if dep in path else [node, dep]
            if dep not in state and (found := visit(dep, path + [node])):
                return found
        state[node] = 2
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n, [])) is not None), None)


def test_no_import_loop_in_the_orchestrator():
    assert _cycle(_graph("orchestrator")) is None


def test_the_core_imports_no_backend():
    graph = _graph("orchestrator")
    core = [m for m in graph if m.count(".") == 1 or m.startswith("orchestrator.sdk")]
    assert "orchestrator.pipeline" in core and "orchestrator.sdk.job" in core
    offenders = {m: sorted(d for d in graph[m] if d.startswith(BACKENDS)) for m in core if m != "orchestrator.factory"}
    assert {m: deps for m, deps in offenders.items() if deps} == {}


def test_jobs_and_inference_code_never_import_the_orchestrator():
    for package in ("jobs", "inference"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
            assert not [n for n in names if n.split(".")[0] == "orchestrator"], path


def test_the_checks_see_a_loop_and_a_backend_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": set()}) is None
    known = _modules("orchestrator")
    assert "orchestrator.backends.local.backend" in _imports("orchestrator.factory", known["orchestrator.factory"],
                                                             known)
