"""dvc.lock entries of stages dvc.yaml no longer defines, and removing them with their outputs.

DVC updates the entry of each stage it runs and never drops one: when a `foreach` / `matrix` list in
params.yaml shrinks (a representation taken out of `pipeline.deep`, say), the entries of the stages it made
stay in dvc.lock, and their `cache: false` outputs stay in metrics/ and plots/, where a stage that reads the
whole directory (the report) still sees them. tests/unit/test_registries.py fails on such entries.

    python -m fkstudy.lockfile            # list them and their outputs (exit 1 if any)
    python -m fkstudy.lockfile --prune    # remove them from dvc.lock, and their outputs no stage declares

Removed outputs are workspace files only: a cached output stays in the DVC cache (`dvc gc` collects it).
Not imported by any stage (it is not a code dep).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from .files import write_text
from .params import dvc_yaml
from .pipeline import stages as defined_stages

_TOP = re.compile(r"^  (\S[^:]*):\s*$")


def stale(root: str | Path = ".") -> dict[str, list[str]]:
    """{stage in dvc.lock that dvc.yaml does not define: its outputs that no defined stage declares}."""
    root = Path(root)
    lock = (dvc_yaml((root / "dvc.lock").read_text(encoding="utf-8")) or {}).get("stages", {})
    defined = defined_stages(root)
    declared = {p for name in defined if name in lock for p in _outs(lock[name])}
    return {name: [p for p in _outs(entry) if p not in declared]
            for name, entry in lock.items() if name not in defined}


def _outs(entry: dict) -> list[str]:
    return [o["path"] for o in entry.get("outs", [])]


def without(text: str, names: set[str]) -> str:
    """dvc.lock's text without the entries of `names` (DVC's own layout kept: an entry is its `  name:` line and
    the deeper-indented lines after it)."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        top = _TOP.match(line)
        if top or (line.strip() and not line.startswith("   ")):
            skip = bool(top) and top.group(1).strip("'\"") in names
        if not skip:
            out.append(line)
    return "".join(out)


def prune(root: str | Path = ".") -> dict[str, list[str]]:
    """Remove the stale entries from dvc.lock and their undeclared outputs from the workspace; returns stale()."""
    root = Path(root)
    found = stale(root)
    if not found:
        return found
    path = root / "dvc.lock"
    text = path.read_text(encoding="utf-8")
    new = without(text, set(found))
    if set(dvc_yaml(new)["stages"]) != set(dvc_yaml(text)["stages"]) - set(found):
        raise RuntimeError(f"{path}: could not cut the entries of {sorted(found)} cleanly; nothing written")
    for outs in found.values():
        for rel in outs:
            target = root / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    write_text(path, new)
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fkstudy.lockfile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--prune", action="store_true", help="remove them from dvc.lock, and their outputs")
    a = ap.parse_args(argv)
    found = prune(a.root) if a.prune else stale(a.root)
    for name, outs in found.items():
        print(f"{'removed' if a.prune else 'stale'}: {name}" + (f"  outputs: {', '.join(outs)}" if outs else ""))
    if not found:
        print("dvc.lock: every entry is a stage dvc.yaml defines")
    return 1 if found and not a.prune else 0


if __name__ == "__main__":
    sys.exit(main())
