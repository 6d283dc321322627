"""Throughput of the deep image extractors on this CPU.

    python bench/bench_deep.py [--n 48] [--batch-size 16] [--threads 2] [--methods vgg16 efficientnet_lite0 ...]

Each extractor runs in its own subprocess (TensorFlow and torch never share one), on the
image cache when data/interim/images.npz exists, else on random 224x224 images, after one
warm-up batch; the timed pass is repeated and the best and median images/s are printed (the
2 cores are shared, so the best run is the closest to this CPU's own speed). Also peak RSS
per extractor, and for VGG16 the achieved GFLOP/s (conv base, counted analytically: 2 FLOP
per multiply-add, 30.7 GFLOP per 224x224 image = the usual "15.5 G" multiply-adds) against
the best measured float32 matmul peak (numpy and TF, same threads). Weights come from the
local weights dir (`weights/`) or random init — speed does not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_METHODS = ("vgg16", "efficientnet_lite0", "efficientnetb0", "mobilenetv3small", "clip")


def vgg16_conv_flops(size: int = 224) -> float:
    """FLOPs of VGG16's 13 conv layers on one size x size image (2 per multiply-add, bias ignored)."""
    blocks = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    flops, cin, side = 0.0, 3, size
    for cout, n in blocks:
        for _ in range(n):
            flops += 2.0 * side * side * 9 * cin * cout
            cin = cout
        side //= 2
    return flops


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def matmul_gflops(fn, n: int, repeats: int = 30) -> float:
    """Best-of GFLOP/s of an n x n float32 matmul callable."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def numpy_peak(n: int) -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    return matmul_gflops(lambda: a @ b, n)


def tf_peak(n: int) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32, seed=0)
    b = tf.random.normal((n, n), dtype=tf.float32, seed=1)
    return matmul_gflops(lambda: tf.linalg.matmul(a, b).numpy(), n)


def load_images(n: int):
    import numpy as np

    cache = ROOT / "data" / "interim" / "images.npz"
    if cache.exists():
        from fkstudy.image.cache import load_image_cache

        images, _, _ = load_image_cache(cache)
        if len(images) >= n:
            return images[:n], "image cache"
    return np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8), "random"


def worker(method: str, n: int, batch_size: int, threads: int, matmul_n: int, repeats: int) -> dict:
    """One extractor in this process: warm-up batch, then n images timed `repeats` times."""
    import numpy as np

    from fkstudy.image import deep

    images, origin = load_images(n + batch_size)
    warm, timed = images[:batch_size], images[batch_size:]
    policy = deep.WeightsPolicy(dir=str(ROOT / "weights"), allow_random_init=True, allow_download=False)
    cfg = {"batch_size": batch_size, "variant": "gap", "normalization": "inception", "arch": "ViT-B-32",
           "tag": "openai"}
    out: dict = {"method": method, "images": n, "batch_size": batch_size, "threads": threads, "data": origin}
    if method == "matmul_numpy":
        out.update(gflops=round(numpy_peak(matmul_n), 1), matmul_n=matmul_n)
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            deep.extract(method, warm, cfg, policy, n_jobs=threads)
            rates = []
            for _ in range(repeats):
                timings: dict = {}
                X, rec = deep.extract(method, timed, cfg, policy, n_jobs=threads, timings=timings)
                rates.append(n / timings["extract_seconds"])
        ips = max(rates)
        out.update(dim=int(X.shape[1]), weights=rec["weights"], images_per_second=round(ips, 2),
                   images_per_second_median=round(float(np.median(rates)), 2))
        if method == "vgg16":
            gflop = vgg16_conv_flops(images.shape[1])
            peak = max(tf_peak(matmul_n), numpy_peak(matmul_n))
            out.update(gflop_per_image=round(gflop / 1e9, 2), achieved_gflops=round(ips * gflop / 1e9, 1),
                       matmul_peak_gflops=round(peak, 1), matmul_n=matmul_n)
            out["fraction_of_matmul_peak"] = round(out["achieved_gflops"] / out["matmul_peak_gflops"], 3)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="images timed per extractor")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per extractor (best is reported)")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(a.threads)
    if a.worker:
        print(json.dumps(worker(a.worker, a.n, a.batch_size, a.threads, a.matmul_n, a.repeats)))
        return
    rows = []
    for method in ["matmul_numpy", *a.methods]:
        cmd = [sys.executable, __file__, "--worker", method, "--n", str(a.n), "--batch-size", str(a.batch_size),
               "--threads", str(a.threads), "--matmul-n", str(a.matmul_n), "--repeats", str(a.repeats)]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if res.returncode or not lines:
            print(f"{method}: failed (exit {res.returncode})\n{res.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(lines[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\nmethod              images/s (best / median)  dim    weights       peak RSS MB  notes")
    for r in rows:
        note = ""
        if r["method"] == "matmul_numpy":
            note = f"numpy float32 {r['matmul_n']}^3 matmul peak: {r['gflops']} GFLOP/s"
        elif r["method"] == "vgg16":
            note = (f"{r['achieved_gflops']} GFLOP/s achieved ({r['gflop_per_image']} GFLOP/image) vs matmul "
                    f"peak {r['matmul_peak_gflops']} GFLOP/s = {100 * r['fraction_of_matmul_peak']:.0f}%")
        rate = f"{r['images_per_second']} / {r['images_per_second_median']}" if "images_per_second" in r else ""
        print(f"{r['method']:<19} {rate:>24}  {r.get('dim', ''):<6} "
              f"{r.get('weights', ''):<13} {r['peak_rss_mb']:>11}  {note}")


if __name__ == "__main__":
    main()
