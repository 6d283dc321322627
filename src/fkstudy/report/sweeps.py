"""The sweeps of section 6: each sweeps/<name>.json that `fkstudy sweep select` wrote (a parameter
grid run as DVC experiments and chosen on train+val figures) as a table, with its rule and what was applied."""
from __future__ import annotations

import json
from pathlib import Path

from .. import sweep
from .document import Block, Heading, Para, Table


def load(root: Path) -> list[dict]:
    """Every sweep result under sweeps/, in name order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / sweep.OUT_DIR).glob("*.json"))]


def blocks(results: list[dict]) -> list[Block]:
    if not results:
        return []
    out: list[Block] = [Heading("Sweeps: parameters chosen as DVC experiments", 3),
                        Para("Each grid below ran as queued DVC experiments (`fkstudy sweep run <name>`, sweeps.yaml) "
                             f"and was chosen on train+val figures only: {sweep.RULE}. `now` marks the params the "
                             "pipeline ran with before the sweep.")]
    for r in results:
        columns, rows = sweep.table(r)
        applied = r.get("applied", "not applied")
        noise = f" ± `{r['std'].split(':')[-1]}`" if r.get("std") else ""
        out += [Para(f"**{r['sweep']}**: {r['about']} (`{r['metric']}`{noise}; "
                     f"baseline commit {r['baseline_commit'][:7]}). Applied: {applied}."),
                Table(columns, rows)]
    return out
