"""Each stage's code dependencies, generated from the import graph and written into dvc.yaml.

A stage's code is exactly the project files its process can execute: its script in stages/, every module of
src/fkstudy it imports, transitively — imports anywhere in a file (inside functions too), the package
`__init__`s on the way, "fkstudy.x.y:function" references that registries import lazily, the models of
the params sections the stage declares (fkstudy.params.SECTIONS: a stage validates only those), and the
files a module declares in `PACKAGE_DATA` (e.g. the report's templates). DVC then re-runs a stage when,
and only when, code it runs has changed.

    python -m fkstudy.codedeps            # differences between dvc.yaml and the imports (exit 1 if any)
    python -m fkstudy.codedeps --write    # rewrite the code deps of every stage group in dvc.yaml
    python -m fkstudy.codedeps --sizes    # the import closure of each stage, and its size

In dvc.yaml each stage group's `deps:` starts with the generated block (between the marker comments); data,
params and weight-record deps follow it, untouched. tests/unit/test_codedeps.py fails, naming the stage
and the module, on any difference.
"""
from __future__ import annotations

import argparse
import ast
import re
import statistics
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .params import SECTIONS
from .pipeline import stages as resolved_stages

BEGIN = "# code: generated from the imports (python -m fkstudy.codedeps --write)"
END = "# data"
REFERENCE = re.compile(r"^(fkstudy(?:\.\w+)+)(?::\w+)?$")   # "fkstudy.text.encoders:bert"
TABLE_OF_SECTIONS = "src/fkstudy/params.py"                # its references are per stage (declared sections)
SCRIPT = re.compile(r"\bpython3?\s+(stages/\w+\.py)\b")


@dataclass(frozen=True)
class Tree:
    root: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    def module_file(self, module: str) -> Path | None:
        base = self.src / module.replace(".", "/")
        for cand in (base / "__init__.py", base.with_suffix(".py")):
            if cand.is_file():
                return cand
        return None

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _package_of(tree: Tree, path: Path) -> str:
    """The package a file's relative imports start from ("" for a stage script)."""
    if not path.is_relative_to(tree.src):
        return ""
    parts = list(path.relative_to(tree.src).with_suffix("").parts)
    return ".".join(parts if parts[-1] == "__init__" and parts.pop() is not None else parts[:-1])


@lru_cache(maxsize=None)
def _direct(tree: Tree, path: Path) -> frozenset[str]:
    """Repo-relative paths `path` imports or references directly."""
    source = path.read_text(encoding="utf-8")
    names: set[str] = set()
    data: list[str] = []
    package = _package_of(tree, path)
    follow_refs = tree.rel(path) != TABLE_OF_SECTIONS
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and follow_refs:
            ref = REFERENCE.match(node.value)
            if ref:
                names.add(ref.group(1))
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PACKAGE_DATA"
                                                  for t in node.targets):
            data += [e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant)]
    out = {tree.rel(path.parent / d) for d in data}
    for name in names:
        if not path.is_relative_to(tree.src) and (path.parent / f"{name}.py").is_file():
            out.add(tree.rel(path.parent / f"{name}.py"))   # a stage script importing a sibling (_bootstrap)
            continue
        parts = name.split(".")
        if parts[0] != "fkstudy":
            continue
        for i in range(1, len(parts) + 1):                  # the package __init__s on the way, then the module
            found = tree.module_file(".".join(parts[:i]))
            if found is not None:
                out.add(tree.rel(found))
    out.discard(tree.rel(path))
    return frozenset(out)


def closure(tree: Tree, starts: list[str]) -> set[str]:
    """Every repo-relative path reachable from `starts` through imports and references."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        path = tree.root / rel
        if path.suffix == ".py":
            todo.extend(_direct(tree, path))
    return seen


def section_modules(tree: Tree, declared: list[str]) -> list[str]:
    """The modules of the params sections a stage declares (what fkstudy.runtime loads for it)."""
    out = []
    for section in sorted({d.split(".")[0] for d in declared}):
        if section in SECTIONS:
            found = tree.module_file(SECTIONS[section].partition(":")[0])
            out.append(tree.rel(found))
    return out


def _declared(definition: dict) -> list[str]:
    keys: list[str] = []
    for entry in definition.get("params", []) or []:
        keys += [entry] if isinstance(entry, str) else [k for names in entry.values() for k in names or []]
    return keys


def stage_closures(root: str | Path, placeholders: bool = False) -> dict[str, set[str]]:
    """{stage name: its code files} for every stage dvc.yaml defines (instances resolved). `placeholders`: a
    group whose matrix list is empty in params.yaml (the catalogue-scale stages by default) still gets one
    instance `<group>@_`, so its deps are generated too; without it only the stages DVC runs are named."""
    tree = Tree(Path(root).resolve())
    out = {}
    for name, definition in resolved_stages(tree.root, placeholders=placeholders).items():
        script = SCRIPT.search(str(definition.get("cmd", "")))
        if script is None:
            raise SystemExit(f"dvc.yaml stage {name}: no `python stages/<x>.py` in its cmd: {definition.get('cmd')!r}")
        out[name] = closure(tree, [script.group(1), *section_modules(tree, _declared(definition))])
    return out


def group_deps(root: str | Path) -> dict[str, list[str]]:
    """{dvc.yaml stage group: sorted code deps}: the union over the group's instances."""
    groups: dict[str, set[str]] = {}
    for name, files in stage_closures(root, placeholders=True).items():
        groups.setdefault(name.split("@")[0], set()).update(files)
    return {g: sorted(files, key=lambda f: (not f.startswith("stages/"), f)) for g, files in groups.items()}


# ------------------------------------------------------------------------------------ dvc.yaml text
_GROUP = re.compile(r"^  (\w+):\s*$")
_DEPS = re.compile(r"^(\s+)deps:\s*$")
_ITEM = re.compile(r"^(\s+)- (\S+?)(?:\s+#.*)?$")


def is_code(dep: str) -> bool:
    return dep.startswith("src/") or (dep.startswith("stages/") and dep.endswith(".py"))


def current(text: str) -> dict[str, list[str]]:
    """{stage group: the code deps dvc.yaml lists}."""
    out: dict[str, list[str]] = {}
    for group, _, items in _deps_blocks(text.splitlines()):
        out[group] = [dep for _, dep in items if dep is not None and is_code(dep)]
    return out


def _deps_blocks(lines: list[str]):
    """(group, index of the `deps:` line, [(line index, dep or None for a comment)]) per stage group."""
    group = None
    i = 0
    while i < len(lines):
        m = _GROUP.match(lines[i])
        if m:
            group = m.group(1)
        d = _DEPS.match(lines[i])
        if d and group is not None:
            items, j = [], i + 1
            while j < len(lines):
                item = _ITEM.match(lines[j])
                stripped = lines[j].strip()
                if item and len(item.group(1)) > len(d.group(1)):
                    items.append((j, item.group(2)))
                elif stripped.startswith("#") and (len(lines[j]) - len(lines[j].lstrip())) > len(d.group(1)):
                    items.append((j, None))
                else:
                    break
                j += 1
            yield group, i, items
            i = j
            continue
        i += 1


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml with each group's code deps replaced by `deps[group]` (generated block first, data after)."""
    lines = text.splitlines()
    out: list[str] = []
    pos = 0
    for group, at, items in _deps_blocks(lines):
        if group not in deps:
            continue
        indent = " " * (len(lines[at]) - len(lines[at].lstrip()) + 2)
        out += lines[pos:at + 1]
        out.append(f"{indent}{BEGIN}")
        out += [f"{indent}- {d}" for d in deps[group]]
        out.append(f"{indent}{END}")
        for j, dep in items:
            if dep is None:
                if lines[j].strip() not in (BEGIN, END):
                    out.append(lines[j])
            elif not is_code(dep):
                out.append(lines[j])
        pos = (items[-1][0] if items else at) + 1
    out += lines[pos:]
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def differences(root: str | Path) -> list[str]:
    """One line per (stage group, module) that dvc.yaml lists but the imports do not, or the reverse."""
    root = Path(root)
    wanted = group_deps(root)
    listed = current((root / "dvc.yaml").read_text(encoding="utf-8"))
    lines = []
    for group in sorted(set(wanted) | set(listed)):
        have, want = set(listed.get(group, [])), set(wanted.get(group, []))
        lines += [f"stage {group}: missing code dep {m} (imported, not in dvc.yaml)" for m in sorted(want - have)]
        lines += [f"stage {group}: superfluous code dep {m} (in dvc.yaml, not imported)" for m in sorted(have - want)]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fkstudy.codedeps", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    ap.add_argument("--sizes", action="store_true", help="print each stage's closure size (project modules)")
    a = ap.parse_args(argv)
    root = Path(a.root)
    if a.sizes:
        closures = stage_closures(root)
        sizes = {s: len([f for f in c if f.startswith("src/") and f.endswith(".py")]) for s, c in closures.items()}
        for s, n in sorted(sizes.items()):
            print(f"{n:3d}  {s}")
        print(f"median {statistics.median(sizes.values())} project modules over {len(sizes)} stages")
        return 0
    if a.write:
        path = root / "dvc.yaml"
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, group_deps(root))
        if new != text:
            from .files import write_text

            write_text(path, new)
        print(f"dvc.yaml: code deps of {len(group_deps(root))} stage groups written")
        return 0
    diff = differences(root)
    print("\n".join(diff) or "dvc.yaml code deps match the imports")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
