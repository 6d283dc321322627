"""Stage label_audit: suspected label errors of the whole catalogue (cleanlab on out-of-fold probabilities
of a text head and an image head), ranked, with the suggested category; counts per category pair; the
test accuracy of the selected fusion model on the products not flagged, beside the official one.
Feeds no model: the official labels stay the study's ground truth."""
import _bootstrap  # noqa: F401
import numpy as np
import pandas as pd

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.evaluate.metrics import rounded
from fkstudy.files import row_index
from fkstudy.image.cache import load_image_cache
from fkstudy.plots import train as train_plots
from fkstudy.runtime import log, run_stage, start_stage
from fkstudy.train import label_audit
from fkstudy.train.recipes import require_real_weights


def main() -> None:
    stage = start_stage("label_audit")
    p, seed = stage.params.label_audit, stage.params.seed
    text_path, image_path = paths.features("text", p.text_set), paths.features("image", p.image_set)
    T, t_ids, _ = files.load_features(text_path)
    I, i_ids, i_meta = files.load_features(image_path)
    require_real_weights(i_meta, image_path)
    catalog = load_catalog(paths.CATALOG, features={text_path: t_ids, image_path: i_ids})
    with stage.timed("label audit", "seconds"):
        proba, issues = label_audit.audit_features((T, t_ids), (I, i_ids), catalog, p.head, p.n_splits, seed)
    predictions = pd.read_csv(paths.plots("fusion", "fusion_confusion.csv"), dtype=str, keep_default_na=False)
    accuracy = label_audit.accuracy_without_flagged(predictions, issues)
    pairs = label_audit.pair_counts(issues)

    files.write_csv(paths.LABEL_ISSUES, issues.round(4))
    files.write_csv(paths.plots("label_audit", "pairs.csv"), pairs)
    by_split = issues["split"].value_counts()
    files.write_json(paths.metrics("label_audit"), rounded({
        "text_set": p.text_set, "image_set": p.image_set, "n_products": int(len(proba)),
        "n_flagged": int(len(issues)), "flagged_fraction": len(issues) / max(len(proba), 1),
        **{f"flagged_{s}": int(by_split.get(s, 0)) for s in ("train", "val", "test")},
        "out_of_fold_accuracy": float((proba.to_numpy().argmax(1) == np.array(
            [list(proba.columns).index(c) for c in catalog.set_index("id").loc[proba.index, "category"]])).mean()),
        "fusion_test_accuracy": accuracy["test_accuracy"],
        "fusion_test_accuracy_unflagged": accuracy["test_accuracy_unflagged"],
        "fusion_test_errors": accuracy["test_errors"], "fusion_test_errors_flagged": accuracy["test_errors_flagged"],
        "examples": int(min(p.examples, len(issues)))}))
    stage.write_timings("label_audit")

    images, img_ids, _ = load_image_cache(paths.IMAGE_CACHE)
    top = issues.head(p.examples)
    have = top["id"].isin(set(img_ids.tolist())).to_numpy()
    blank = np.full(images.shape[1:], 255, np.uint8)
    pictures = [images[row_index(img_ids, [i])[0]] if ok else blank for i, ok in zip(top["id"], have)]
    titles = [f"{n[:26]}\n{g[:16]} -> {s[:16]} ({q:.2f})"
              for n, g, s, q in zip(top["name"], top["given"], top["suggested"], top["suggested_probability"])]
    files.save_figure(train_plots.prediction_grid(pictures, titles, [False] * len(top),
                                                  "Suspected label errors: given -> suggested (probability)"),
                      paths.plots("label_audit", "examples.png"))
    log.info("label_audit: %d of %d products flagged (%d in test); fusion test accuracy %.4f, %.4f on the unflagged",
             len(issues), len(proba), accuracy["test_flagged"], accuracy["test_accuracy"],
             accuracy["test_accuracy_unflagged"])


if __name__ == "__main__":
    run_stage(main)
