"""Benchmark the supervised stages on the real data: wall time of every `train` matrix entry and of
`multiseed`, head fit time per run (goal: <= 60 s once backbone features are cached), and the cost
of augmentation precomputed once (`train.augment.views` views through the frozen backbone) versus
augmentation on the fly (the backbone re-run on freshly augmented photos every epoch).

    python bench/bench_train.py [--skip-stages] [--otf-images 32]

Runs the stage scripts in place (the real data's cached features must exist: `dvc repro augment`
first) and prints a table. On-the-fly cost is measured on `--otf-images` augmented photos through
each backbone and extrapolated to one epoch of the 630 train photos times the epochs a head ran.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ("vgg16", "efficientnet_lite0", "efficientnetb0", "mobilenetv3small")


def run_stage(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def otf_images_per_second(backbone: str, n: int) -> float:
    """Backbone throughput on n augmented photos, measured in a child process (TF or torch alone)."""
    code = f"""
import sys, time, json
sys.path.insert(0, "stages"); import _bootstrap  # noqa
from fkstudy.config import load_params
from fkstudy.image import augment, deep
from fkstudy.image.cache import load_image_cache
p = load_params()
images, ids, _ = load_image_cache("data/interim/images.npz")
a = p["train"]["augment"]
cfg = augment.AugmentConfig(a["flip"], a["rotation"], a["zoom"], a["brightness"])
t0 = time.perf_counter()
views, _ = augment.views(images[:{n}], 1, cfg, 0)
t1 = time.perf_counter()
deep.extract("{backbone}", views, p["deep_features"]["{backbone}"], deep.WeightsPolicy.from_params(p["pretrained"]),
             n_jobs=p["n_jobs"])
t2 = time.perf_counter()
print(json.dumps({{"augment_per_image": (t1 - t0) / {n}, "backbone_per_image": (t2 - t1) / {n}}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return 1.0 / (r["augment_per_image"] + r["backbone_per_image"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-stages", action="store_true", help="only read timings of the last run")
    ap.add_argument("--otf-images", type=int, default=32)
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    views = params["train"]["augment"]["views"]

    wall = {}
    if not args.skip_stages:
        for b in BACKBONES:
            for v in ("base", "augmented"):
                wall[f"{b}_{v}"] = run_stage(["stages/train.py", b, v])
        for b in ("vgg16", "efficientnet_lite0"):
            wall[f"multiseed@{b}"] = run_stage(["stages/multiseed.py", f"data/features/image/{b}.npz"])

    print(f"{'run':<30}{'wall s':>9}{'head fit s':>12}{'epochs':>8}{'s/epoch':>9}{'test acc':>10}")
    for b in BACKBONES:
        for v in ("base", "augmented"):
            k = f"{b}_{v}"
            t = json.loads((ROOT / f"reports/timings/train/{k}.json").read_text())
            m = json.loads((ROOT / f"metrics/train/{k}.json").read_text())
            print(f"{k:<30}{wall.get(k, float('nan')):>9.1f}{t['fit_seconds']:>12.1f}{m['epochs_run']:>8}"
                  f"{t['seconds_per_epoch']:>9.2f}{m['test_accuracy']:>10.4f}")
    for b in ("vgg16", "efficientnet_lite0"):
        k = f"multiseed@{b}"
        print(f"{k:<30}{wall.get(k, float('nan')):>9.1f}")
    if wall:
        print(f"train matrix total wall: {sum(v for k, v in wall.items() if '@' not in k):.1f} s; "
              f"multiseed total: {sum(v for k, v in wall.items() if '@' in k):.1f} s")

    print(f"\naugmentation: precomputed ({views} views, once) vs on the fly (every epoch), 630 train photos")
    print(f"{'backbone':<20}{'img/s':>8}{'precomputed s':>15}{'on-the-fly s/epoch':>20}{'x epochs run':>14}")
    for b in BACKBONES:
        ips = otf_images_per_second(b, args.otf_images)
        m = json.loads((ROOT / f"metrics/train/{b}_augmented.json").read_text())
        pre = views * 630 / ips
        print(f"{b:<20}{ips:>8.1f}{pre:>15.0f}{630 / ips:>20.0f}{630 / ips * m['epochs_run']:>14.0f}")


if __name__ == "__main__":
    main()
