"""Stage ingest: validate the raw CSV + images, write the catalog, the problem report, metrics, plots."""
import _bootstrap  # noqa: F401
import json
from pathlib import Path

from fkstudy import io
from fkstudy.data.catalog import top_specification_values
from fkstudy.data.ingest import ingest_metrics, run_ingest
from fkstudy.plots import data as dplots
from fkstudy.runtime import log, start_stage, timed, write_timings

params = start_stage("ingest")
dp = params["data"]
timing: dict = {}
with timed("ingest", timing, "seconds"):
    result = run_ingest(Path(dp["raw_dir"]), dp, seed=params["seed"], n_jobs=params["n_jobs"])
cat = result.catalog

io.write_parquet("data/interim/catalog.parquet", cat)
io.write_csv("reports/ingest_problems.csv", result.problems)
io.write_json("metrics/ingest.json", ingest_metrics(result))
write_timings("ingest", {"products": len(cat), **timing})

import json  # noqa: E402

specs = cat["specifications"].map(lambda s: [tuple(p) for p in json.loads(s)])
spec_table = top_specification_values(specs, dp["top_spec_keys"], dp["top_spec_values"])
io.write_csv("plots/ingest/spec_top_values.csv", spec_table)
balance = cat.groupby(["category", "split"]).size().rename("products").reset_index()
io.write_csv("plots/ingest/class_balance.csv", balance)
io.save_figure(dplots.class_balance(cat), "plots/ingest/class_balance.png")
io.save_figure(dplots.category_sunburst(cat, dp["tree_max_depth"]), "plots/ingest/category_tree.png")
io.save_figure(dplots.specification_values(spec_table), "plots/ingest/spec_top_values.png")
log.info("catalog: %d products, %d problems listed in reports/ingest_problems.csv", len(cat), len(result.problems))
