"""Classical descriptors and bag of visual words on small generated images."""
from __future__ import annotations

import numpy as np
import pytest

from fkstudy.image import classical as C
from fkstudy.image.registry import IMAGE
from fkstudy.registry import Context

SIDE = 96


def _images(n: int = 5, seed: int = 0) -> np.ndarray:
    """Textured test images: noise, blobs, stripes, checkerboards; plus one blank white image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    out = []
    for i in range(n - 1):
        base = rng.integers(0, 256, (SIDE // 8, SIDE // 8, 3), dtype=np.uint8)
        img = np.kron(base, np.ones((8, 8, 1), np.uint8))  # blocky: corners for SIFT/ORB
        stripes = ((np.sin(xx * (0.2 + 0.1 * i) + yy * 0.1 * i) > 0) * 60).astype(np.uint8)
        out.append(np.clip(img.astype(int) - stripes[..., None], 0, 255).astype(np.uint8))
    out.append(np.full((SIDE, SIDE, 3), 255, np.uint8))  # blank: no keypoints
    return np.stack(out)


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.fixture(scope="module")
def features(images):
    return C.classical_features(images, n_jobs=1)


# --------------------------------------------------------------------------- classical vector
def test_classical_shape_dtype_finite(features, images):
    dims = C.ClassicalConfig().block_dims()
    assert features.shape == (len(images), sum(dims.values())) == (len(images), 293)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    assert np.abs(features[:-1]).sum(axis=1).min() > 0


def test_classical_deterministic_and_batch_invariant(features, images):
    again = C.classical_features(images, n_jobs=2)
    assert np.array_equal(features, again)  # threads, same result
    part = C.classical_features(images[2:4], n_jobs=1)
    assert np.array_equal(part, features[2:4])  # a row depends on its image only
    assert C.classical_features(images[:0]).shape == (0, 293)


def test_block_sizes_follow_config(images):
    cfg = C.ClassicalConfig(color_bins=8, grid=2, sift_max_keypoints=50)
    X = C.classical_features(images[:2], cfg=cfg)
    assert X.shape == (2, sum(cfg.block_dims().values()))
    for name, fn in cfg.blocks().items():
        assert fn(images[0]).shape == (cfg.block_dims()[name],), name


def test_histogram_blocks_are_distributions(images):
    hist = C.color_histogram(images[0], 16)
    assert hist[:16].sum() == pytest.approx(1) and hist[48:].sum() == pytest.approx(1)
    assert C.color_histogram(images[-1], 16)[48:].sum() == 0  # white: no saturation, no hue mass
    lbp = C.lbp_histogram(images[0])
    assert lbp[:10].sum() == pytest.approx(1) and lbp[10:].sum() == pytest.approx(1)


def test_blank_image_has_zero_sift_summary(images):
    assert not C.sift_summary(images[-1]).any()
    assert C.sift_summary(images[0])[0] > 0  # log(1 + keypoints)


def test_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="RGB uint8"):
        C.classical_features(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        C.classical_features(np.zeros((1, 8, 8, 3), np.float32))


# --------------------------------------------------------------------------- bag of visual words
@pytest.mark.parametrize("kind,width,dtype", [("sift", 128, np.float32), ("orb", 32, np.uint8)])
def test_local_descriptors(images, kind, width, dtype):
    descs = C.extract_local_descriptors(images, kind, max_keypoints=100, n_jobs=2)
    assert len(descs) == len(images)
    assert all(d.ndim == 2 and d.shape[1] == width and d.dtype == dtype for d in descs)
    assert len(descs[-1]) == 0 and len(descs[0]) > 0
    assert all(len(d) <= 100 * 1.1 for d in descs)  # cv2 may keep a few ties beyond nfeatures
    with pytest.raises(ValueError):
        C.extract_local_descriptors(images, "surf", 10)


def test_orb_bits_unpacked_for_kmeans():
    d = np.array([[0b10000001] + [0] * 31], dtype=np.uint8)
    f = C.descriptors_as_float(d)
    assert f.shape == (1, 256) and f.dtype == np.float32 and f.sum() == 2


def test_codebook_fitted_only_on_given_descriptors():
    rng = np.random.default_rng(0)
    a, b, far = np.zeros(128), np.full(128, 10.0), np.full(128, 500.0)
    train = [(p + rng.normal(0, 0.5, (40, 128))).astype(np.float32) for p in (a, b, a, b)]
    other = [(far + rng.normal(0, 0.5, (400, 128))).astype(np.float32)]
    cb = C.fit_codebook(train + [np.zeros((0, 128), np.float32)], k=2, seed=0, max_descriptors=10_000)
    centers = sorted(cb.centers.mean(axis=1))
    assert centers[0] == pytest.approx(0, abs=0.5) and centers[1] == pytest.approx(10, abs=0.5)
    assert cb.n_images == 5 and cb.n_descriptors_available == 160 and cb.n_descriptors_used == 160
    assert np.abs(cb.centers - 500).min() > 100  # nothing learnt from descriptors it was not given
    sub = C.fit_codebook(train, k=2, seed=0, max_descriptors=50)
    assert sub.n_descriptors_used == 50
    assert np.array_equal(sub.centers, C.fit_codebook(train, k=2, seed=0, max_descriptors=50).centers)
    counts = C.bovw_counts(other, cb)
    assert counts.sum() == 400  # other images are still encoded with the train vocabulary
    with pytest.raises(ValueError, match="descriptors"):
        C.fit_codebook([np.zeros((1, 128), np.float32)], k=2, seed=0, max_descriptors=10)


def test_zero_keypoints_give_zero_histogram(images):
    descs = C.extract_local_descriptors(images, "sift", 100)
    cb = C.fit_codebook(descs, k=8, seed=0, max_descriptors=5000)
    counts = C.bovw_counts(descs, cb)
    assert counts.sum(axis=1).tolist() == [len(d) for d in descs]
    for normalize in ("l1", "l2", "none"):
        H = C.bovw_histograms(descs, cb, normalize=normalize, idf=C.fit_idf(counts))
        assert H.dtype == np.float32 and H.shape == (len(images), 8)
        assert not H[-1].any() and np.isfinite(H).all()
    H = C.bovw_histograms(descs, cb, normalize="l1")
    assert np.allclose(H[:-1].sum(axis=1), 1)
    with pytest.raises(ValueError):
        C.weight_histograms(counts, normalize="max")


def test_idf_down_weights_common_words():
    counts = np.array([[1, 1], [1, 0], [1, 0]])
    idf = C.fit_idf(counts)
    assert idf[0] < idf[1]
    H = C.weight_histograms(counts, "none", idf)
    assert H[0, 1] > H[0, 0]


def test_bovw_features_fits_on_train_ids_only(images, monkeypatch):
    ids = [f"id{i}" for i in range(len(images))]
    seen = {}
    real_fit = C.fit_codebook

    def spy(descriptor_list, *a, **k):
        seen["n"] = len(descriptor_list)
        seen["rows"] = sum(len(d) for d in descriptor_list)
        return real_fit(descriptor_list, *a, **k)

    monkeypatch.setattr(C, "fit_codebook", spy)
    train = {"id0", "id1", "id4"}
    X, info = C.bovw_features(images, ids, train, "orb", k=4, max_keypoints=100, max_descriptors=5000,
                              normalize="l1", tfidf=True, seed=0)
    descs = C.extract_local_descriptors(images, "orb", 100)
    assert seen == {"n": 3, "rows": len(descs[0]) + len(descs[1]) + len(descs[4])}
    assert info["codebook_fit_images"] == 3 and info["images_without_keypoints"] == 1
    assert info["ids_without_keypoints"] == ["id4"]
    assert X.shape == (len(images), 4) and not X[4].any()
    with pytest.raises(ValueError, match="train"):
        C.bovw_features(images, ids, set(), "orb", 4, 100, 5000, "l1", False, 0)


# --------------------------------------------------------------------------- registry functions
def test_registry_classical_entry_is_classical_features_with_its_params(images):
    p = IMAGE["classical"].params.model_validate({"color_bins": 8, "grid": 2, "sift_max_keypoints": 50})
    X, info = IMAGE.check("classical", "classical").load()(images, p, Context(ids=[f"i{k}" for k in range(len(images))]))
    cfg = C.ClassicalConfig(color_bins=8, grid=2, sift_max_keypoints=50)
    np.testing.assert_array_equal(X, C.classical_features(images, cfg=cfg))
    assert info == {f"dim_{k}": v for k, v in cfg.block_dims().items()}


def test_registry_bovw_entries_fit_on_the_context_train_ids(images):
    ids = [f"id{i}" for i in range(len(images))]
    p = IMAGE["orb_bovw"].params.model_validate({"max_keypoints": 100, "k": 4, "max_descriptors": 5000,
                                                 "normalize": "l1", "tfidf": True})
    run = IMAGE.check("orb_bovw", "classical").load()
    X, info = run(images, p, Context(ids=ids, fit_ids=frozenset({"id0", "id1", "id4"}), seed=0))
    want, want_info = C.bovw_features(images, ids, {"id0", "id1", "id4"}, "orb", k=4, max_keypoints=100,
                                      max_descriptors=5000, normalize="l1", tfidf=True, seed=0)
    np.testing.assert_array_equal(X, want)
    assert info == want_info and info["codebook_fit_images"] == 3
    with pytest.raises(ValueError, match="train ids"):  # a codebook is never fitted on every row by default
        run(images, p, Context(ids=ids, fit_ids=None))
    assert IMAGE["sift_bovw"].load() is C.extract_sift_bovw
