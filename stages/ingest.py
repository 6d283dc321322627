"""Stage ingest: validate the raw CSV + images, write the catalog, the problem report, metrics, plots."""
import _bootstrap  # noqa: F401
import json
from pathlib import Path

from fkstudy import files, paths
from fkstudy.data.catalog import top_specification_values
from fkstudy.data.ingest import ingest_metrics, run_ingest
from fkstudy.plots import data as data_plots
from fkstudy.runtime import log, run_stage, start_stage


def main() -> None:
    stage = start_stage("ingest")
    dp = stage.params.data
    with stage.timed("ingest", "seconds"):
        result = run_ingest(Path(dp.raw_dir), dp, seed=stage.params.seed, n_jobs=stage.params.n_jobs)
    cat = result.catalog
    files.write_parquet(paths.CATALOG, cat)
    files.write_csv(paths.INGEST_PROBLEMS, result.problems)
    files.write_json(paths.metrics("ingest"), ingest_metrics(result))
    stage.write_timings("ingest", products=len(cat))

    specs = cat["specifications"].map(lambda s: [tuple(p) for p in json.loads(s)])
    spec_table = top_specification_values(specs, dp.top_spec_keys, dp.top_spec_values)
    files.write_csv(paths.plots("ingest", "spec_top_values.csv"), spec_table)
    balance = cat.groupby(["category", "split"]).size().rename("products").reset_index()
    files.write_csv(paths.plots("ingest", "class_balance.csv"), balance)
    files.save_figure(data_plots.class_balance(cat), paths.plots("ingest", "class_balance.png"))
    files.save_figure(data_plots.category_sunburst(cat, dp.tree_max_depth), paths.plots("ingest", "category_tree.png"))
    files.save_figure(data_plots.specification_values(spec_table), paths.plots("ingest", "spec_top_values.png"))
    log.info("catalog: %d products, %d problems listed in %s", len(cat), len(result.problems), paths.INGEST_PROBLEMS)


if __name__ == "__main__":
    run_stage(main)
