"""Stage text_features@<method>: cleaned text -> data/features/text_<method>.npz (+ metrics, plots).

The method is an entry of the text registry (fkstudy.text.registry): its function, its params section
`text_features.<method>`, which field (name / description / both) in which form (raw / lemmas / stems).
"""
import _bootstrap  # noqa: F401

import pandas as pd

from fkstudy import files, paths, tracking
from fkstudy.registry import Context
from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.text.registry import TEXT
from fkstudy.weightfiles import WeightsPolicy


def main(argv=None) -> None:
    (method,) = stage_argument(argv, [TEXT.names()], "python stages/text_features.py <method>")
    stage = start_stage(f"text_features@{method}")
    params, entry = stage.params, TEXT[method]
    p, fit_on = getattr(params.text_features, method), params.text_features.fit_on
    text = pd.read_parquet(paths.TEXT)
    docs = text[f"{p.input}_{p.field}"].fillna("").tolist()
    fit_ids = frozenset(text.loc[text["split"] == "train", "id"]) if fit_on == "train" else None
    ctx = Context(ids=text["id"].tolist(), fit_ids=fit_ids, seed=params.seed, n_jobs=params.n_jobs,
                  weights=WeightsPolicy(dir=params.pretrained.dir), timings=stage.timings)
    with stage.timed(method, "seconds"):
        X, info = entry.load()(docs, p, ctx)

    trained = info.pop("_model", None)  # a model trained here (Word2Vec): an MLflow run, not stored in meta
    info.setdefault("weights", f"fitted on {fit_on}")
    meta = {"method": method, "modality": "text", "params": p.model_dump(), "fit_on": fit_on, **info}
    files.save_features(paths.features("text", method), X, text["id"], meta)
    files.write_json(paths.metrics("text_features", method),
                     {"dim": int(X.shape[1]), "n": int(X.shape[0]),
                      **{k: v for k, v in info.items() if isinstance(v, (int, float, str))}})
    stage.write_timings("text_features", method, n=int(X.shape[0]))

    if trained is not None:
        import mlflow

        with tracking.run(params.mlflow.experiment, stage.name, method, {**p.model_dump(), "seed": params.seed,
                                                                         "fit_on": fit_on},
                          tags={"modality": "text", "method": method}):
            mlflow.log_metrics({"vocab_size": info["vocab_size"], "train_seconds": stage.timings["train_seconds"],
                                "docs_without_known_words": info["docs_without_known_words"]})
    log.info("%s: X %s", method, X.shape)


if __name__ == "__main__":
    run_stage(main)
