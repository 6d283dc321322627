"""What the catalogue-scale stages share: plan the chunks of the catalogue, write the wall-clock figures.

What a job's outputs hold does not depend on the engine (no engine, address, worker count or time in them): a
run on Ray and a run in one process give the same files, and DVC sees no change downstream. Wall-clock figures
go to reports/timings/ (git-ignored) with the engine that made them.
"""
from __future__ import annotations

from . import catalog, engine


def plan(stage, unique_ids: bool) -> catalog.Plan:
    s = stage.params.scale
    with stage.timed("plan", "plan_seconds"):
        p = catalog.plan(s.catalog, s.chunk_rows, unique_ids=unique_ids)
    engine.log.info("%s: %d products (%d readable) in %d chunks of %d", s.catalog, p.rows, p.good, len(p.chunks),
                    s.chunk_rows)
    return p


def write_timings(stage, group: str, key: str, rows: int) -> None:
    s = stage.params.scale
    seconds = stage.timings.get("job_seconds", 0.0)
    stage.write_timings(group, key, engine=s.engine, ray_address=s.ray_address, workers=s.workers,
                        rows=rows, rows_per_second=round(rows / max(seconds, 1e-9), 2))
