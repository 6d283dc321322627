"""Stage score_catalog@<alias>: every product of the catalogue file (`scale.catalog`) through the registered model
models:/<register.model_name>@<alias> -> data/catalog/predictions_<alias>.csv, the file `python -m fkstudy
predict --input <catalogue> --output <file>` writes (same columns, per-row errors, bytes), and its counts in
metrics/score_catalog/<alias>.json (with the model version the alias pointed at).

Streams: the catalogue is read chunk by chunk and the predictions appended as they come, so memory holds a few
chunks, not the catalogue. Runs in this process or on a Ray cluster (`scale.engine`). The alias is resolved when
the stage runs and DVC does not see it move: after a promotion, `dvc repro -f score_catalog@<alias>`. Not in the
default pipeline: `pipeline.score_catalog` lists the aliases.
"""
import _bootstrap  # noqa: F401

from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.scale import scoring
from fkstudy.scale.params import check_chunking


def main(argv=None) -> None:
    (alias,) = stage_argument(argv, [None], "python stages/score_catalog.py <alias>")
    stage = start_stage(f"score_catalog@{alias}")
    params = stage.params
    check_chunking(params.scale.chunk_rows, params.scale.batch_size, "scale.batch_size")
    m = scoring.scoring_job(stage, params.register.model_name, alias)
    log.info("%s: %d products, %d predicted, %d failed", m["model"], m["rows"], m["rows"] - m["failed"], m["failed"])


if __name__ == "__main__":
    run_stage(main)
