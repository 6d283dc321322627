"""Benchmark of the image half, part 1: prints figures, asserts nothing.

    python bench/bench_images.py [--image-dir DIR] [--catalog PARQUET] [--limit N] [--n-jobs 2]

decode + resize images/s (with and without libjpeg draft decoding), images/s of each classical
block and of the whole classical vector, SIFT/ORB descriptor extraction images/s, peak RSS.
Without a catalog the images of --image-dir are used (id = file name). The process is set up as a stage's
(stages/_bootstrap.py); runs alone (bench/_bench.py: refuses a loaded machine unless --allow-loaded).
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import _bench

_bench.stage_process()  # as in every stage process: the pinned numerics (OpenCV's IPP off...), before numpy loads

import pandas as pd  # noqa: E402

from fkstudy.image import classical as C  # noqa: E402
from fkstudy.image.preprocess import build_image_cache  # noqa: E402


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} images/s  ({n} in {seconds:.2f} s)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-dir", default=str(_bench.ROOT / "data/raw/flipkart/Images"))
    ap.add_argument("--catalog", default=str(_bench.ROOT / "data/interim/catalog.parquet"))
    ap.add_argument("--limit", type=int, default=0, help="first N images by id (0 = all)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--aspect", default="pad", choices=("pad", "crop", "stretch"))
    ap.add_argument("--block-sample", type=int, default=200, help="images for the per-block timings")
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("bench_images", args.allow_loaded)

    if Path(args.catalog).exists():
        catalog = pd.read_parquet(args.catalog, columns=["id", "image", "image_status"])
    else:
        names = sorted(p.name for p in Path(args.image_dir).iterdir() if p.is_file())
        catalog = pd.DataFrame({"id": names, "image": names, "image_status": "ok"})
    catalog = catalog[catalog["image_status"] == "ok"].sort_values("id")
    if args.limit:
        catalog = catalog.head(args.limit)
    print(f"{len(catalog)} images from {args.image_dir}, n_jobs={args.n_jobs}, size={args.size}, aspect={args.aspect}")

    for draft in (True, False):
        t0 = time.perf_counter()
        images, ids, _, failures = build_image_cache(catalog, args.image_dir, args.size, args.aspect,
                                                     max_pixels=40_000_000, blank_threshold=8.0,
                                                     n_jobs=args.n_jobs, jpeg_draft=draft, progress=False)
        dt = time.perf_counter() - t0
        print(f"decode+resize jpeg_draft={str(draft):5}: {rate(len(catalog), dt)}, {len(failures)} failed  {bench.note()}")

    sample = images[: args.block_sample]
    print(f"classical blocks, 1 thread, {len(sample)} images:")
    for name, fn in C.ClassicalConfig().blocks().items():
        t0 = time.perf_counter()
        for im in sample:
            fn(im)
        print(f"  {name:6}: {rate(len(sample), time.perf_counter() - t0)}  {bench.note()}")
    t0 = time.perf_counter()
    X = C.classical_features(images, n_jobs=args.n_jobs)
    print(f"classical vector ({X.shape[1]}-d), n_jobs={args.n_jobs}: {rate(len(images), time.perf_counter() - t0)}  "
          f"{bench.note()}")
    for kind in ("sift", "orb"):
        t0 = time.perf_counter()
        descs = C.extract_local_descriptors(images, kind, 500, n_jobs=args.n_jobs)
        n_kp = sum(len(d) for d in descs)
        print(f"{kind} descriptors, n_jobs={args.n_jobs}: {rate(len(images), time.perf_counter() - t0)}, "
              f"{n_kp / max(1, len(images)):.0f} keypoints/image  {bench.note()}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB  {bench.note()}")


if __name__ == "__main__":
    main()
