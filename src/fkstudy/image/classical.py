"""Hand-crafted image features on RGB uint8 arrays (the preprocessed cache).

1. `classical_features`: one fixed-length vector per image, the concatenation of blocks
     color   RGB histograms (3 x color_bins) + saturation-weighted hue histogram (color_bins)
     patch   grid x grid patches: mean and std of each channel (in [0, 1])
     lbp     uniform LBP histograms, (P=8, R=1) and (P=16, R=2)
     glcm    6 GLCM properties x 3 distances, mean and std over 4 angles (32 grey levels)
     gabor   mean and std of the Gabor magnitude, wavelengths 4/8/16 px x 4 orientations (pyramid)
     sift    keypoint count, response/size stats, orientation histogram, pooled descriptor stats
   (293 dims with the defaults). Each image is processed alone, so a row never depends on
   the batch. Blocks have different scales: standardise before distance-based methods.
2. Bag of visual words: `extract_local_descriptors` (SIFT or ORB) -> `fit_codebook` on the
   descriptors it is given (the caller passes train images only) -> `bovw_counts` ->
   optional `fit_idf` (train rows) -> `weight_histograms`. An image without keypoints gets an
   all-zero histogram.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import cv2
import numpy as np
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
GLCM_DISTANCES = (1, 2, 4)
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_LEVELS = 32
LBP_SETTINGS = ((8, 1.0), (16, 2.0))
GABOR_BASE_WAVELENGTH = 4.0  # px; octave k of the pyramid sees wavelength 4 * 2**k at full size
GABOR_OCTAVES = 3
GABOR_ORIENTATIONS = 4
SIFT_ORI_BINS = 8


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _sift(max_keypoints: int):
    """A fresh detector per call: OpenCV detectors are cheap to create, not documented thread-safe."""
    return cv2.SIFT_create(nfeatures=max_keypoints)


def _normalised(h: np.ndarray) -> np.ndarray:
    total = h.sum()
    return h / total if total > 0 else np.zeros_like(h, dtype=np.float64)


def _map(fn: Callable, items: Sequence, n_jobs: int) -> list:
    """Order-preserving map; threads, since OpenCV/scikit-image kernels release the GIL."""
    if n_jobs <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(fn, items))


# --------------------------------------------------------------------------- feature blocks
def color_histogram(rgb: np.ndarray, bins: int = 16) -> np.ndarray:
    """Per-channel RGB histograms + a hue histogram weighted by saturation (grey/white pixels,
    whose hue is noise, weigh nothing). Each histogram sums to 1 (or is all zero)."""
    parts = [_normalised(np.bincount((rgb[..., c].ravel().astype(np.int32) * bins) >> 8, minlength=bins))
             for c in range(3)]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # H in [0, 180)
    hue_bin = (hsv[..., 0].ravel().astype(np.int32) * bins) // 180
    parts.append(_normalised(np.bincount(hue_bin, weights=hsv[..., 1].ravel() / 255.0, minlength=bins)))
    return np.concatenate(parts)


def patch_statistics(rgb: np.ndarray, grid: int = 4) -> np.ndarray:
    """Mean and std of each channel over a grid x grid tiling (values in [0, 1])."""
    h, w = rgb.shape[:2]
    ys = np.linspace(0, h, grid + 1).round().astype(int)
    xs = np.linspace(0, w, grid + 1).round().astype(int)
    img = rgb.astype(np.float64) / 255.0
    out = []
    for i in range(grid):
        for j in range(grid):
            patch = img[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].reshape(-1, 3)
            out.extend(patch.mean(axis=0))
            out.extend(patch.std(axis=0))
    return np.asarray(out)


def lbp_histogram(rgb: np.ndarray) -> np.ndarray:
    """Uniform (rotation-invariant) LBP code histograms for each (P, R) in LBP_SETTINGS."""
    grey = _grey(rgb)
    parts = []
    for p, r in LBP_SETTINGS:
        codes = local_binary_pattern(grey, p, r, method="uniform").astype(np.int64)
        parts.append(_normalised(np.bincount(codes.ravel(), minlength=p + 2)[:p + 2].astype(np.float64)))
    return np.concatenate(parts)


def glcm_features(rgb: np.ndarray) -> np.ndarray:
    """GLCM properties per distance, mean and std over the 4 angles (contrast/dissimilarity log1p)."""
    q = (_grey(rgb).astype(np.uint16) * GLCM_LEVELS >> 8).astype(np.uint8)
    glcm = graycomatrix(q, distances=GLCM_DISTANCES, angles=GLCM_ANGLES, levels=GLCM_LEVELS,
                        symmetric=True, normed=True)
    out = []
    for prop in GLCM_PROPS:
        v = graycoprops(glcm, prop)  # [distances, angles]
        if prop in ("contrast", "dissimilarity"):
            v = np.log1p(v)
        out.append(np.concatenate([v.mean(axis=1), v.std(axis=1)]))
    return np.concatenate(out)


@lru_cache(maxsize=4)
def _gabor_bank(wavelength: float, n_orient: int) -> tuple:
    """(even, odd) kernel pairs at one wavelength; the even part is zero-mean, both are scaled by
    the L1 norm of the even part so that energies compare across filters."""
    sigma = 0.56 * wavelength  # ~1 octave bandwidth
    ksize = 2 * int(math.ceil(2.5 * sigma)) + 1
    bank = []
    for k in range(n_orient):
        theta = np.pi * k / n_orient
        even = cv2.getGaborKernel((ksize, ksize), sigma, theta, wavelength, 0.5, 0, ktype=cv2.CV_32F)
        odd = cv2.getGaborKernel((ksize, ksize), sigma, theta, wavelength, 0.5, np.pi / 2, ktype=cv2.CV_32F)
        even -= even.mean()
        scale = np.abs(even).sum()
        bank.append((even / scale, odd / scale))
    return tuple(bank)


def gabor_features(rgb: np.ndarray, octaves: int = GABOR_OCTAVES, n_orient: int = GABOR_ORIENTATIONS) -> np.ndarray:
    """Mean and std of the Gabor energy |even + i odd| for n_orient orientations at wavelengths
    4, 8, 16, ... px: one small 4-px bank applied to successive pyramid levels (pyrDown), which
    is equivalent to larger filters at full resolution and several times cheaper."""
    grey = _grey(rgb).astype(np.float32) / 255.0
    out = []
    for level in range(octaves):
        if level:
            grey = cv2.pyrDown(grey)
        for even, odd in _gabor_bank(GABOR_BASE_WAVELENGTH, n_orient):
            re = cv2.filter2D(grey, cv2.CV_32F, even, borderType=cv2.BORDER_REFLECT)
            im = cv2.filter2D(grey, cv2.CV_32F, odd, borderType=cv2.BORDER_REFLECT)
            mag = cv2.magnitude(re, im)
            out.extend((float(mag.mean()), float(mag.std())))
    return np.asarray(out)


def sift_summary(rgb: np.ndarray, max_keypoints: int = 500) -> np.ndarray:
    """Summary of SIFT on one image (45 values; all zero when no keypoint is found):
    log(1+count), response mean/std, size mean/std (relative to the image side), keypoint
    orientation histogram, descriptor mass pooled over the 8 orientation bins (mean, std) and
    over the 16 spatial cells (mean)."""
    grey = _grey(rgb)
    kps, desc = _sift(max_keypoints).detectAndCompute(grey, None)
    out = np.zeros(1 + 4 + SIFT_ORI_BINS + 8 + 8 + 16)
    if desc is None or len(kps) == 0:
        return out
    side = float(max(grey.shape))
    resp = np.array([k.response for k in kps])
    size = np.array([k.size for k in kps]) / side
    angle = np.array([k.angle for k in kps]) % 360.0
    ori = _normalised(np.bincount((angle * SIFT_ORI_BINS / 360.0).astype(int) % SIFT_ORI_BINS,
                                  minlength=SIFT_ORI_BINS).astype(np.float64))
    d = desc.astype(np.float64).reshape(len(kps), 16, 8)  # OpenCV layout: 4x4 cells x 8 orientations
    mass = d.sum(axis=(1, 2), keepdims=True)
    d = np.divide(d, mass, out=np.zeros_like(d), where=mass > 0)
    by_ori, by_cell = d.sum(axis=1), d.sum(axis=2)  # [m, 8], [m, 16]
    out[:] = np.concatenate([[math.log1p(len(kps)), resp.mean(), resp.std(), size.mean(), size.std()], ori,
                             by_ori.mean(axis=0), by_ori.std(axis=0), by_cell.mean(axis=0)])
    return out


# --------------------------------------------------------------------------- the vector
@dataclass(frozen=True)
class ClassicalConfig:
    color_bins: int = 16
    grid: int = 4
    sift_max_keypoints: int = 500

    def blocks(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Name -> function of one image; the order is the order of the columns."""
        return {
            "color": lambda im: color_histogram(im, self.color_bins),
            "patch": lambda im: patch_statistics(im, self.grid),
            "lbp": lbp_histogram,
            "glcm": glcm_features,
            "gabor": gabor_features,
            "sift": lambda im: sift_summary(im, self.sift_max_keypoints),
        }

    def block_dims(self) -> dict[str, int]:
        return {"color": 4 * self.color_bins, "patch": 6 * self.grid ** 2,
                "lbp": sum(p + 2 for p, _ in LBP_SETTINGS),
                "glcm": 2 * len(GLCM_PROPS) * len(GLCM_DISTANCES),
                "gabor": 2 * GABOR_OCTAVES * GABOR_ORIENTATIONS,
                "sift": 1 + 4 + SIFT_ORI_BINS + 8 + 8 + 16}


def classical_vector(rgb: np.ndarray, cfg: ClassicalConfig = ClassicalConfig()) -> np.ndarray:
    """All blocks of one RGB uint8 image, concatenated (float32, finite)."""
    _check_rgb(rgb)
    v = np.concatenate([fn(rgb) for fn in cfg.blocks().values()])
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def classical_features(images: np.ndarray, n_jobs: int = 1,
                       cfg: ClassicalConfig = ClassicalConfig()) -> np.ndarray:
    """float32 [n, d] for images uint8 [n, H, W, 3]; deterministic, row i depends on image i only."""
    dim = sum(cfg.block_dims().values())
    if len(images) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    X = np.stack(_map(lambda im: classical_vector(im, cfg), list(images), n_jobs))
    assert X.shape[1] == dim, (X.shape, dim)
    return X


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")


# --------------------------------------------------------------------------- bag of visual words
def local_descriptors(rgb: np.ndarray, kind: str, max_keypoints: int) -> np.ndarray:
    """Descriptors of one image: SIFT float32 [m, 128] or ORB uint8 [m, 32] (packed bits)."""
    _check_rgb(rgb)
    grey = _grey(rgb)
    if kind == "sift":
        detector, empty = _sift(max_keypoints), np.zeros((0, 128), np.float32)
    elif kind == "orb":
        detector, empty = cv2.ORB_create(nfeatures=max_keypoints), np.zeros((0, 32), np.uint8)
    else:
        raise ValueError(f"descriptor kind must be 'sift' or 'orb', got {kind!r}")
    _, desc = detector.detectAndCompute(grey, None)
    return empty if desc is None else desc


def extract_local_descriptors(images: np.ndarray, kind: str, max_keypoints: int,
                              n_jobs: int = 1) -> list[np.ndarray]:
    """One descriptor array per image (possibly with 0 rows), in the order of `images`."""
    return _map(lambda im: local_descriptors(im, kind, max_keypoints), list(images), n_jobs)


def descriptors_as_float(desc: np.ndarray) -> np.ndarray:
    """float32 rows for k-means: binary (uint8, ORB) descriptors are unpacked to 0/1 bits, so that
    squared Euclidean distance equals Hamming distance."""
    if desc.dtype == np.uint8:
        return np.unpackbits(desc, axis=1).astype(np.float32)
    return desc.astype(np.float32, copy=False)


@dataclass(frozen=True)
class Codebook:
    centers: np.ndarray  # float32 [k, d] in descriptors_as_float space
    n_images: int  # images the descriptors came from
    n_descriptors_available: int
    n_descriptors_used: int  # after subsampling to max_descriptors

    @property
    def k(self) -> int:
        return int(self.centers.shape[0])


def fit_codebook(descriptor_list: Sequence[np.ndarray], k: int, seed: int, max_descriptors: int,
                 batch_size: int = 4096) -> Codebook:
    """MiniBatchKMeans visual vocabulary fitted on exactly the descriptors given (subsampled,
    seeded, to at most max_descriptors). Pass train-split images only.

    Runs single-threaded: MiniBatchKMeans gains little from OpenMP at this size, and spinning
    OpenMP threads collapse on shared cores (measured here: 2.3 s with 1 thread, 48 s with 2
    on a loaded 2-core machine, same result).
    """
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    available = [d for d in descriptor_list if len(d)]
    n_avail = int(sum(len(d) for d in available))
    if n_avail < k:
        raise ValueError(f"cannot fit a {k}-word codebook on {n_avail} descriptors "
                         f"({len(descriptor_list)} images); lower k or max_keypoints")
    rng = np.random.default_rng(seed)
    stacked = np.concatenate(available)
    if n_avail > max_descriptors:
        stacked = stacked[np.sort(rng.choice(n_avail, size=max_descriptors, replace=False))]
    data = descriptors_as_float(stacked)
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch_size, n_init=3,
                         max_iter=100, max_no_improvement=20)
    with threadpool_limits(1):
        km.fit(data)
    return Codebook(km.cluster_centers_.astype(np.float32), len(descriptor_list), n_avail, len(data))


def bovw_counts(descriptor_list: Sequence[np.ndarray], codebook: Codebook) -> np.ndarray:
    """Visual-word counts, int64 [n, k]; an image without descriptors gets a row of zeros."""
    from sklearn.metrics import pairwise_distances_argmin
    from threadpoolctl import threadpool_limits

    counts = np.zeros((len(descriptor_list), codebook.k), dtype=np.int64)
    with threadpool_limits(1):  # small per-image products; see fit_codebook
        for i, d in enumerate(descriptor_list):
            if len(d):
                words = pairwise_distances_argmin(descriptors_as_float(d), codebook.centers)
                counts[i] = np.bincount(words, minlength=codebook.k)
    return counts


def fit_idf(counts: np.ndarray) -> np.ndarray:
    """Smoothed inverse document frequency of each word, from (train) count rows:
    idf = ln((1 + n) / (1 + df)) + 1, as scikit-learn's TfidfTransformer."""
    n = counts.shape[0]
    df = (counts > 0).sum(axis=0)
    return (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float64)


NORMALIZE = ("l1", "l2", "none")


def weight_histograms(counts: np.ndarray, normalize: str = "l1", idf: np.ndarray | None = None) -> np.ndarray:
    """counts [n, k] -> float32 histograms: optional tf-idf weighting, then row normalisation.
    Zero rows stay zero."""
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    H = counts.astype(np.float64)
    if idf is not None:
        H = H * idf[None, :]
    if normalize != "none":
        norm = H.sum(axis=1, keepdims=True) if normalize == "l1" else np.sqrt((H ** 2).sum(axis=1, keepdims=True))
        H = np.divide(H, norm, out=np.zeros_like(H), where=norm > 0)
    return H.astype(np.float32)


def bovw_histograms(descriptor_list: Sequence[np.ndarray], codebook: Codebook, normalize: str = "l1",
                    idf: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, k] bag-of-visual-words histograms (see weight_histograms)."""
    return weight_histograms(bovw_counts(descriptor_list, codebook), normalize, idf)


def bovw_features(images: np.ndarray, ids: Sequence[str], train_ids: set[str], kind: str, k: int,
                  max_keypoints: int, max_descriptors: int, normalize: str, tfidf: bool, seed: int,
                  n_jobs: int = 1) -> tuple[np.ndarray, dict]:
    """Leak-free BoVW for all images: codebook (and idf) fitted on the images whose id is in
    `train_ids`, histograms computed for every image. Returns (X float32 [n, k], info)."""
    ids = [str(i) for i in ids]
    is_train = np.array([i in train_ids for i in ids], dtype=bool)
    if not is_train.any():
        raise ValueError("no training image: the codebook must be fitted on split == 'train' ids")
    descs = extract_local_descriptors(images, kind, max_keypoints, n_jobs)
    codebook = fit_codebook([d for d, t in zip(descs, is_train) if t], k, seed, max_descriptors)
    counts = bovw_counts(descs, codebook)
    idf = fit_idf(counts[is_train]) if tfidf else None
    X = weight_histograms(counts, normalize, idf)
    n_kp = np.array([len(d) for d in descs])
    info = {
        "descriptor": kind, "k": codebook.k, "codebook_fit_images": int(is_train.sum()),
        "codebook_fit_descriptors_available": codebook.n_descriptors_available,
        "codebook_fit_descriptors_used": codebook.n_descriptors_used,
        "images_without_keypoints": int((n_kp == 0).sum()),
        "ids_without_keypoints": [i for i, n in zip(ids, n_kp) if n == 0],
        "keypoints_mean": round(float(n_kp.mean()), 2) if len(n_kp) else 0.0,
        "keypoints_median": float(np.median(n_kp)) if len(n_kp) else 0.0,
        "empty_words": int((counts.sum(axis=0) == 0).sum()),
    }
    return X, info


# --------------------------------------------------------------------------- registry functions
def extract(images: np.ndarray, p, ctx) -> tuple[np.ndarray, dict]:
    """The classical descriptor (registry entry `classical`): nothing is fitted."""
    cfg = ClassicalConfig(color_bins=p.color_bins, grid=p.grid, sift_max_keypoints=p.sift_max_keypoints)
    return classical_features(images, n_jobs=ctx.n_jobs, cfg=cfg), {f"dim_{k}": v for k, v in cfg.block_dims().items()}


def _bovw(kind: str):
    def run(images: np.ndarray, p, ctx) -> tuple[np.ndarray, dict]:
        """Bag of visual words (registry entries `sift_bovw` / `orb_bovw`): codebook + idf on ctx.fit_ids."""
        if ctx.fit_ids is None:
            raise ValueError(f"{kind}_bovw: the codebook needs the train ids (ctx.fit_ids)")
        return bovw_features(images, ctx.ids, set(ctx.fit_ids), kind, k=p.k, max_keypoints=p.max_keypoints,
                             max_descriptors=p.max_descriptors, normalize=p.normalize, tfidf=p.tfidf, seed=ctx.seed,
                             n_jobs=ctx.n_jobs)
    return run


extract_sift_bovw = _bovw("sift")
extract_orb_bovw = _bovw("orb")
