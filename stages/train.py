"""Stage train@<backbone>-<variant>: the Keras transfer-learning classifier (frozen backbone -> GAP ->
Dense(relu) -> Dropout -> softmax), its head trained on cached backbone features (+ augmented views).

    python stages/train.py <backbone> <variant>

Train on train, early-stop on val, report on test. Writes models/train/<K>/ (head.keras, head.npz,
classes.json and, for Keras backbones, the assembled model.keras), metrics/train/<K>.json,
plots/train/<K>/ and reports/timings/train/<K>.json; one MLflow run with per-epoch metrics and the
model with its signature. Runs TensorFlow only (Lite0's features were made by a torch process).
"""
import _bootstrap  # noqa: F401
import sys
import time

import numpy as np
import pandas as pd

from fkstudy import io, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.image import deep
from fkstudy.image.cache import load_image_cache
from fkstudy.plots import train as tplots
from fkstudy.runtime import log, start_stage, write_timings
from fkstudy.train import heads, keras_head, track, transfer

BACKBONES = ("vgg16", "efficientnet_lite0", "efficientnetb0", "mobilenetv3small")
if len(sys.argv) != 3 or sys.argv[1] not in BACKBONES or sys.argv[2] not in transfer.VARIANTS:
    sys.exit(f"usage: python stages/train.py <backbone> <variant>, backbone in {list(BACKBONES)}, "
             f"variant in {list(transfer.VARIANTS)}")
backbone, variant = sys.argv[1], sys.argv[2]
key = f"{backbone}_{variant}"
params = start_stage(f"train@{backbone}-{variant}")
cfg, seed = params["train"], params["seed"]
deep.set_tf_threads(params["n_jobs"])

feat_path = f"data/features/image/{backbone}.npz"
X, ids, meta = io.load_features(feat_path)
aug_X = aug_ids = None
if variant == "augmented":
    aug_X, aug_ids, aug_meta = io.load_features(f"data/features/augmented/{backbone}.npz")
    if aug_meta.get("sha256") != meta.get("sha256"):
        sys.exit(f"train: augmented views of {backbone} were extracted with other weights than {feat_path} "
                 f"({aug_meta.get('sha256')} vs {meta.get('sha256')}): re-run `dvc repro augment@{backbone}`")
catalog = load_catalog("data/interim/catalog.parquet")
d = transfer.prepare(X, ids, catalog, variant, aug_X, aug_ids)
s, classes = d.splits, d.classes
weights = meta.get("weights", "n/a")

images, img_ids, _ = load_image_cache("data/interim/images.npz")
row = {k: i for i, k in enumerate(img_ids.tolist())}
unfreeze = cfg["fine_tune"]["unfreeze_layers"] if variant == "augmented" else 0
if unfreeze and backbone not in deep.KERAS_METHODS:
    log.warning("train.fine_tune.unfreeze_layers=%d ignored for %s: a torch backbone; its augmented variant "
                "uses the frozen precomputed views only", unfreeze, backbone)
    unfreeze = 0

t0 = time.perf_counter()
head, hist, info = keras_head.fit_head(d.X_fit, transfer.to_index(d.y_fit, classes), s.X_val,
                                       transfer.to_index(s.y_val, classes), len(classes), cfg, seed)
head_seconds = time.perf_counter() - t0
full = None
if backbone in deep.KERAS_METHODS:  # backbone + head in one Keras model (weights checked against the features')
    policy = deep.WeightsPolicy.from_params(params["pretrained"])
    base, rec = deep.load_keras(backbone, tuple(meta["image_cache"]["size"] for _ in range(2)), policy, seed=seed)
    if rec.get("sha256") != meta.get("sha256"):
        sys.exit(f"train: {backbone} weights now resolve to {rec.get('source')} (sha256 {rec.get('sha256')}), "
                 f"but {feat_path} was extracted with sha256 {meta.get('sha256')}: re-run the deep_features stage")
    prep = deep.keras_preprocess(backbone)
    if unfreeze:  # phase 2: end to end, last layers trainable, photos augmented on the fly
        pix = lambda ids_: images[[row[i] for i in ids_]]  # noqa: E731
        full, hist2, info2 = keras_head.fine_tune(base, head, prep, pix(s.ids_train), transfer.to_index(s.y_train, classes),
                                                  pix(s.ids_val), transfer.to_index(s.y_val, classes), cfg, seed)
        hist = pd.concat([hist.assign(phase="head"),
                          hist2.assign(phase="fine_tune", epoch=hist2["epoch"] + len(hist))], ignore_index=True)
        info = {"best_epoch": info["epochs_run"] + info2["best_epoch"], "epochs_run": info["epochs_run"] + info2["epochs_run"],
                "head_best_epoch": info["best_epoch"], "unfrozen_layers": len(info2["unfrozen_layers"])}
    else:
        full = keras_head.assemble(base, head, name=key)
fit_seconds = time.perf_counter() - t0

if unfreeze:  # the backbone changed: evaluate the whole model on the photos
    def full_proba(ids_):
        return keras_head.predict_proba(full, prep(images[[row[i] for i in ids_]].astype(np.float32)), batch_size=16)
    proba, val_proba = full_proba(s.ids_test), full_proba(s.ids_val)
else:
    proba, val_proba = keras_head.predict_proba(head, s.X_test), keras_head.predict_proba(head, s.X_val)
test = heads.metrics_from_proba(s.y_test, proba, classes, classes)
val = heads.metrics_from_proba(s.y_val, val_proba, classes, classes)
pred = np.asarray(classes)[proba.argmax(1)]

# models: the head (Keras + framework-neutral npz) and, for Keras backbones, backbone + head in one file
out_dir = f"models/train/{key}"
with io.atomic_path(f"{out_dir}/head.keras") as tmp:
    head.save(tmp)
io.save_npz(f"{out_dir}/head.npz", **keras_head.head_arrays(head))
io.write_json(f"{out_dir}/classes.json", classes)
if full is not None:
    with io.atomic_path(f"{out_dir}/model.keras") as tmp:
        full.save(tmp)

backbone_params = keras_head.count_params(full.layers[1]) if full is not None else int(meta.get("n_params", 0))
metrics = heads.rounded({
    "backbone": backbone, "variant": variant, "weights": weights,
    "framework": "keras" if full is not None else "torch+keras",
    "backbone_params": backbone_params, "head_params": keras_head.count_params(head),
    "n_train": int(len(s.y_train)), "n_train_views": int(len(d.y_fit)), "n_val": int(len(s.y_val)),
    "n_test": int(len(s.y_test)), "test_accuracy": test["accuracy"], "test_loss": test["log_loss"],
    "macro_f1": test["macro_f1"], "micro_f1": test["micro_f1"], "weighted_f1": test["weighted_f1"],
    "ari": test["ari"], "val_accuracy": val["accuracy"], "val_loss": val["log_loss"], "unfreeze_layers": unfreeze,
    **info,
    "per_class": test["per_class"]})

tags = {"backbone": backbone, "variant": variant, "weights": weights, "framework": metrics["framework"]}
with tracking.run(params["mlflow"]["experiment"], f"train@{backbone}-{variant}", f"train-{key}",
                  {**cfg, "backbone": backbone, "variant": variant, "seed": seed, "features": feat_path}, tags=tags):
    track.log_curve(hist)
    track.log_metrics({k: v for k, v in metrics.items() if k != "per_class"}, "")
    track.log_metrics(test["per_class"], "per_class.")
    track.log_keras_model(full if full is not None else head,
                          np.zeros((1, *full.input_shape[1:]), np.float32) if full is not None else s.X_test[:2],
                          name="model")

io.write_json(f"metrics/train/{key}.json", metrics)
write_timings("train", {"fit_seconds": fit_seconds, "head_fit_seconds": head_seconds,
                        "seconds_per_epoch": fit_seconds / max(info["epochs_run"], 1),
                        "fit_rows": int(len(d.y_fit))}, key)
plots = f"plots/train/{key}"
io.write_csv(f"{plots}/history.csv", hist.round(5))
table = heads.confusion_table(s.ids_test, s.y_test, pred)
io.write_csv(f"{plots}/confusion.csv", table)
label = f"{backbone} {variant} ({weights})"
io.save_figure(tplots.history(hist, f"{label}: training history", info["best_epoch"]), f"{plots}/history.png")
io.save_figure(tplots.confusion_matrix(table, f"{label}: test confusion", classes), f"{plots}/confusion.png")
io.save_figure(tplots.per_class_f1(test["per_class"], f"{label}: per-class F1 (test)"), f"{plots}/per_class_f1.png")

# correct / incorrect examples: the most confident of each, 6 + 6
conf = proba.max(1)
ok = pred == s.y_test
pick = [i for i in np.argsort(-conf) if ok[i]][:6] + [i for i in np.argsort(-conf) if not ok[i]][:6]
io.save_figure(tplots.prediction_grid(
    [images[row[s.ids_test[i]]] for i in pick],
    [f"{s.y_test[i][:18]}\n-> {pred[i][:18]} ({conf[i]:.2f})" for i in pick], [bool(ok[i]) for i in pick],
    f"{label}: most confident correct (green) and incorrect (red) test predictions"), f"{plots}/predictions.png")
log.info("%s: test accuracy %.4f, macro-F1 %.4f (val %.4f), best epoch %d/%d, head fit %.1fs", key,
         metrics["test_accuracy"], metrics["macro_f1"], metrics["val_accuracy"], info["best_epoch"],
         info["epochs_run"], fit_seconds)
