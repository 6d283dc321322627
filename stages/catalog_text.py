"""Stage catalog_text@<method>: a text encoder of the text registry over every product of the catalogue file
(`scale.catalog`, a products CSV as `python -m fkstudy predict --input` reads it) -> data/catalog/features/
text_<method>.npz (the study's feature-file contract, rows in id order).

Runs in this process (`scale.engine: local`) or on a Ray cluster (`ray`, at `scale.ray_address`), chunk by chunk
(fkstudy.scale): the same bytes either way. Not in the default pipeline: `pipeline.catalog_text` lists the
methods (docs/scaling.md "Scaling to the catalogue").
"""
import _bootstrap  # noqa: F401

from pathlib import Path

from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.scale import features
from fkstudy.scale.params import check_chunking


def main(argv=None) -> None:
    (method,) = stage_argument(argv, [features.text_methods()], "python stages/catalog_text.py <method>")
    stage = start_stage(f"catalog_text@{method}")
    params = stage.params
    p = getattr(params.text_features, method)
    features.check_method(features.TEXT, method, p)
    check_chunking(params.scale.chunk_rows, p.batch_size, f"text_features.{method}.batch_size")
    from fkstudy.text.registry import TEXT

    meta = {"method": method, "modality": "text", "params": p.model_dump(), "weights": TEXT[method].weights,
            "input": "raw fields of the catalogue (name / description as `field`)"}
    args = (method, p.model_dump(), str(Path(params.pretrained.dir).resolve()), params.n_jobs)
    metrics = features.features_job(stage, "text", method, features.TextWorker, args, meta, params.n_jobs)
    log.info("%s: %d of %d products encoded (%d-d)", method, metrics["encoded"], metrics["rows"], metrics["dim"])


if __name__ == "__main__":
    run_stage(main)
