"""The shape of the code: no import cycle (imports inside functions count), no module over ~400 lines,
stage scripts are `main()` + a `__main__` guard with no code at module level, and no stage or library
module spells a pipeline path that fkstudy.paths owns."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "fkstudy"
MAX_LINES = 400


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every fkstudy module `path` imports, anywhere in the file (functions included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fkstudy")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("fkstudy"):
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import heads` imports a module
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        deps = set()
        for imp in imports_of(path):
            while imp and imp not in modules:  # `from fkstudy.x import name` -> module fkstudy.x
                imp = imp.rsplit(".", 1)[0] if "." in imp else ""
            if imp and imp != name and imp != "fkstudy":
                deps.add(imp)
        edges[name] = deps
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_over_the_size_limit():
    big = {str(p.relative_to(ROOT)): n for p in [*SRC.rglob("*.py"), *(ROOT / "stages").glob("*.py")]
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_stage_scripts_are_functions():
    """Only imports, a docstring, function/class definitions and the `if __name__ == "__main__"` guard
    at module level: importing a stage runs nothing."""
    for path in sorted((ROOT / "stages").glob("*.py")):
        if path.name == "_bootstrap.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "main" in names, f"{path.name}: no main()"
        for node in tree.body:
            ok = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
                isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))
            assert ok, f"{path.name} line {node.lineno}: code at module level ({ast.unparse(node)[:60]})"


def test_stage_name_is_script_name():
    from fkstudy.pipeline import stages

    for name, definition in stages(ROOT).items():
        script = re.search(r"python stages/(\w+)\.py", definition["cmd"]).group(1)
        assert script == name.split("@")[0], f"stage {name} runs stages/{script}.py"


def test_pipeline_paths_are_spelled_once():
    """data/, metrics/, plots/ paths of the pipeline live in fkstudy.paths, not in string literals elsewhere."""
    pattern = re.compile(r"[\"'](data/(interim|features|pretrained)|models/(train|fusion))")
    offenders = []
    for path in [*SRC.rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        if path.name == "paths.py":
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{i}")
    assert not offenders, f"pipeline paths outside fkstudy.paths: {offenders}"


def test_no_single_letter_module_alias_nor_stdlib_name():
    import sys

    offenders = []
    for path in [*SRC.rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.asname and len(alias.asname) == 1:
                        offenders.append(f"{path.name}: {alias.name} as {alias.asname}")
    assert not offenders, offenders
    clashes = [p.stem for p in SRC.rglob("*.py") if p.stem in sys.stdlib_module_names]
    assert not clashes, f"modules named like the standard library: {clashes}"
