"""Stage gradcam: Grad-CAM overlays for the best trained image classifier on test photos.

Best = highest val accuracy among the train runs with real (not random-init) backbone weights;
test accuracy never picks it. Keras backbones use models/train/<K>/model.keras; EfficientNet-Lite0
(torch) rebuilds backbone + head from the weights file and models/train/<K>/head.npz. A process
imports TensorFlow or torch, never both: the choice is made before either is imported.
"""
import _bootstrap  # noqa: F401
import json
import sys
from pathlib import Path

import numpy as np

from fkstudy import io
from fkstudy.data.catalog import load_catalog
from fkstudy.image import deep
from fkstudy.image.cache import load_image_cache
from fkstudy.plots import gradcam as gplots
from fkstudy.runtime import log, start_stage
from fkstudy.train import gradcam as G

params = start_stage("gradcam")
p, seed = params["gradcam"], params["seed"]
runs = [json.loads(f.read_text()) for f in sorted(Path("metrics/train").glob("*.json"))]
real = [r for r in runs if r.get("weights") not in ("random-init", None, "n/a")]
if not real:
    sys.exit("gradcam: no train run with real backbone weights in metrics/train/ (run `dvc repro train`)")
best = max(real, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
backbone, variant = best["backbone"], best["variant"]
key = f"{backbone}_{variant}"
model_dir = Path("models/train") / key
classes = json.loads((model_dir / "classes.json").read_text())

images, ids, _ = load_image_cache("data/interim/images.npz")
catalog = load_catalog("data/interim/catalog.parquet")
test = catalog[(catalog["split"] == "test") & catalog["id"].isin(set(ids.tolist()))]
row = {k: i for i, k in enumerate(ids.tolist())}
test_images = images[[row[i] for i in test["id"]]]
y_true = np.array([classes.index(c) for c in test["category"]])

if backbone in deep.KERAS_METHODS:
    import keras

    deep.set_tf_threads(params["n_jobs"])
    model = keras.models.load_model(model_dir / "model.keras")
    prep = deep.keras_preprocess(backbone)
    x = prep(test_images.astype(np.float32))
    proba = np.asarray(model.predict(x, batch_size=16, verbose=0))
    layer = G.keras_target_layer(model)
    maps = lambda idx: G.gradcam_keras(model, x[idx], proba[idx].argmax(1), layer)  # noqa: E731
elif backbone == "efficientnet_lite0":
    import torch

    deep.set_torch_threads(params["n_jobs"])
    net, rec = deep.load_lite0(deep.WeightsPolicy.from_params(params["pretrained"]), seed)
    head = G.torch_head_from_npz(model_dir / "head.npz")
    mean, std = deep.LITE0_NORMS[params["deep_features"]["efficientnet_lite0"]["normalization"]]
    x = deep.to_nchw(test_images, mean, std)
    with torch.inference_mode():
        proba = np.concatenate([head(net.extract_features(x[i:i + 32]).mean(dim=(2, 3))).numpy()
                                for i in range(0, len(x), 32)])
    layer = "extract_features (last conv block, 1280 x 7 x 7)"
    maps = lambda idx: G.gradcam_torch(net, head, x[idx], proba[idx].argmax(1))  # noqa: E731
else:
    sys.exit(f"gradcam: no Grad-CAM path for backbone {backbone!r}")

y_pred = proba.argmax(1)
accuracy = float((y_pred == y_true).mean())
if abs(accuracy - best["test_accuracy"]) > 0.02:  # the reloaded model must be the one that was evaluated
    sys.exit(f"gradcam: reloaded {key} scores {accuracy:.4f} on test, train reported {best['test_accuracy']:.4f}")
correct, incorrect = G.select_examples(y_true, y_pred, proba, p["n_examples"], seed)
for name, idx in (("correct", correct), ("incorrect", incorrect)):
    heat = maps(idx) if len(idx) else np.zeros((0, *test_images.shape[1:3]), np.float32)
    overlays = np.stack([G.overlay(test_images[i], h, p["alpha"]) for i, h in zip(idx, heat)]) if len(idx) else \
        np.zeros((0, *test_images.shape[1:]), np.uint8)
    titles = [gplots.example_title(classes[y_true[i]], classes[y_pred[i]], proba[i, y_pred[i]]) for i in idx]
    io.save_figure(gplots.gradcam_grid(test_images[idx], overlays, titles, ncols=3,
                                       title=f"Grad-CAM {key} ({name} test predictions, most confident first)"),
                   f"plots/gradcam/{name}.png")
io.write_json("metrics/gradcam.json", {
    "model": key, "backbone": backbone, "variant": variant, "weights": best["weights"], "layer": layer,
    "n_correct": int(len(correct)), "n_incorrect": int(len(incorrect)), "test_accuracy": round(accuracy, 4),
    "selection": "highest val accuracy among real-weights train runs"})
log.info("gradcam %s (%s): %d correct, %d incorrect examples", key, layer, len(correct), len(incorrect))
