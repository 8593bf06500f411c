"""The shape of the package: layers without import circles, no env probing in the trainers, no
private names across modules, small modules, and nothing that points outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "jaxlem"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The jaxlem module (or package) an import of ``name`` loads, if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported jaxlem module, line, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    # imports under ``if TYPE_CHECKING:`` at module level never run
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name) if name.startswith("jaxlem") else None
            if target and target != mod:
                out.append((target, node.lineno, id(node) in top))
    return out


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, _, _ in _imports(mod, path):
            graph[mod].add(target)
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            parent = target.rpartition(".")[0]
            while parent and parent != mod and not mod.startswith(parent + "."):
                graph[mod].add(parent)
                parent = parent.rpartition(".")[0]
    return graph


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers():
    """Physics and markets -> envs -> train -> app -> studies: no lower layer imports a higher
    one."""
    layer = {
        "jaxlem.envs": 1,
        "jaxlem.train": 2,
        "jaxlem.app": 3,
        "jaxlem.testing": 3,
        "jaxlem.studies": 4,
    }

    def level(m):
        return max((v for k, v in layer.items() if m == k or m.startswith(k + ".")), default=0)

    bad = [
        f"{m} -> {t}"
        for m, path in MODULES.items()
        for t, _, _ in _imports(m, path)
        if level(t) > level(m) and m != "jaxlem"  # the package facade registers the envs
    ]
    assert not bad, bad


def test_no_function_local_imports_of_the_package():
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {t}"
        for m, path in MODULES.items()
        for t, line, top in _imports(m, path)
        if not top
    ]
    assert not bad, bad


def test_no_private_names_across_modules():
    bad = []
    for path in MODULES.values():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxlem"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}")
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("jaxlem"):
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}"
                )
    assert not bad, bad


def test_trainers_never_probe_the_env():
    """The trainers ask the env contract, never ``hasattr``/``getattr`` on an env or params."""
    bad = []
    for path in (PKG / "train").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "hasattr":
                    bad.append(f"{path.name}:{node.lineno} hasattr")
                elif node.func.id == "getattr":
                    target = ast.unparse(node.args[0])
                    if target not in ("self", "base", "v", "bank"):
                        bad.append(f"{path.name}:{node.lineno} getattr({target}, ...)")
    assert not bad, bad


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_module_size(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_nothing_points_outside_the_repository():
    pattern = re.compile(r"DOMAIN\.md|DESIGN\.md|\.\./shared|/work/shared")
    files = [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg"}
        and not any(part in {".venv", ".git", "outputs", "site", "multirun"} for part in p.parts)
        and "egg-info" not in str(p)
        and p.name != "test_architecture.py"
    ]
    bad = [str(p.relative_to(ROOT)) for p in files if pattern.search(p.read_text(errors="ignore"))]
    assert not bad, bad
