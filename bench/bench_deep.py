"""Throughput and achieved GFLOP/s of the deep extractors on this CPU, float32 against bfloat16.

    python bench/bench_deep.py [--n 64] [--repeats 3] [--threads 2] [--precisions float32 bfloat16]
        [--methods vgg16 efficientnet_lite0 efficientnet_lite2 bert mpnet] [--numerics avx512|avx2|native]
        [--json bench/deep_real_data.json]

Timed is the pipeline's own code, its precision set as the stages set it. Image extractors (also
efficientnetb0, mobilenetv3small, clip) run through their registry entry, deep.extract(name, images, params,
ctx), params = deep_features.<name> of params.yaml with `precision` replaced (Keras: mixed_bfloat16 policy;
torch: CPU autocast), on the image cache (data/interim/images.npz, else /work/main's, else random) resized
to the entry's input_size; the figure is the stage's own extract_seconds. Loaders are memoised, so every
pass runs on one loaded model as a stage does over its whole cache (a new Keras model re-traces inside the
timing). Text encoders "bert" (all-MiniLM-L6-v2) and "mpnet" (all-mpnet-base-v2) run load_transformer once,
then encode_mean_pooled (tokenisation included) with text_features.<name>'s field / batch_size /
max_length, on real product texts (data/interim/catalog.parquet, else the raw CSV).
Every process is set up as a stage's (stages/_bootstrap.py): fkstudy.numerics pins the code paths, by
default the avx2 tier, whose oneDNN cap (AVX2) leaves bfloat16 emulated; `--numerics native` (or
FKSTUDY_NUMERICS=native) lets oneDNN use AVX512_BF16 / AMX, as a native-tier stage would.
Each (extractor, precision) runs in its own subprocess (TensorFlow and torch never share one; peak RSS is
per worker): one warm-up batch, then --repeats timed passes over --n items (default 64 images / 256
texts); best and median items/s. The machine is shared: the best pass is the closest to its own speed;
the 1-min load average is recorded around every worker.

FLOPs per item are counted (2 per multiply-add) with torch.utils.flop_counter.FlopCounterMode: over one
image (Lite, CLIP), or one batch of real tokenised texts / its size (padding included, as computed; the CPU
flash-attention kernel gets FlopCounterMode's SDPA formula); VGG16's 13 convs analytically; other Keras
nets are not counted. Achieved GFLOP/s = best items/s x FLOP/item, against the best n x n matmul of the
same precision and threads (float32: numpy, torch, TF; bfloat16: torch, TF; preallocated outputs where
the library allows). Weights: the local weights/ dir or random init (speed does not depend on the values);
mpnet's folder is joined from its pip packages into weights/ when missing.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _bench

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

IMAGE_CACHES = (ROOT / "data/interim/images.npz", Path("/work/main/data/interim/images.npz"))
CATALOG = ROOT / "data/interim/catalog.parquet"
RAW_CSV = ROOT / "data/raw/flipkart/flipkart_com-ecommerce_sample_1050.csv"
WEIGHTS = ROOT / "weights"
DEFAULT_METHODS = ("vgg16", "efficientnet_lite0", "efficientnet_lite2", "bert", "mpnet")
TEXT_METHODS = ("bert", "mpnet")
PRECISIONS = ("float32", "bfloat16")  # fkstudy.image.deep.PRECISIONS (not imported: numpy loads after the pins)


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


def torch_flops(fn) -> float:
    """FLOPs torch's FlopCounterMode counts while fn() runs (float32, no autocast: same count). Its table
    lacks the CPU flash-attention kernel SDPA runs here: counted with its own SDPA formula."""
    import torch
    from torch.utils import flop_counter

    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                lambda q, k, v, *args, out_shape=None, **kw: flop_counter.sdpa_flop_count(q, k, v)}
    with torch.inference_mode(), flop_counter.FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        fn()
    return float(counter.get_total_flops())


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_gflops(fn, n: int, repeats: int) -> float:
    """Best-of-`repeats` GFLOP/s of an n x n x n matmul callable, after one warm-up call."""
    fn()
    return round(2.0 * n ** 3 / min(seconds(fn) for _ in range(repeats)) / 1e9, 1)


def matmul_peaks(framework: str, n: int, repeats: int, threads: int) -> dict:
    """{"<lib> <precision>": GFLOP/s}: numpy + torch (float32, bfloat16) or TF (float32, bfloat16)."""
    import numpy as np

    a, b = (np.random.default_rng(s).standard_normal((n, n), dtype=np.float32) for s in (0, 1))
    c = np.empty_like(a)  # preallocated outputs: a fresh one per call costs page faults (~2x at bf16)
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        ha, hb, hc = ta.bfloat16(), tb.bfloat16(), tc.bfloat16()
        return {"numpy float32": best_gflops(lambda: np.matmul(a, b, out=c), n, repeats),
                "torch float32": best_gflops(lambda: torch.matmul(ta, tb, out=tc), n, repeats),
                "torch bfloat16": best_gflops(lambda: torch.matmul(ha, hb, out=hc), n, repeats)}
    from fkstudy.image.deep import set_tf_threads

    set_tf_threads(threads)  # before TF's first op
    import tensorflow as tf

    fa, fb = tf.constant(a), tf.constant(b)
    ha, hb = tf.cast(fa, tf.bfloat16), tf.cast(fb, tf.bfloat16)  # eager CPU ops are synchronous
    return {"tf float32": best_gflops(lambda: tf.linalg.matmul(fa, fb), n, repeats),
            "tf bfloat16": best_gflops(lambda: tf.linalg.matmul(ha, hb), n, repeats)}


def load_images(n: int):
    """(uint8 [n, S, S, 3], origin): the first n cached photos, else random 260 px squares."""
    import numpy as np

    for cache in IMAGE_CACHES:
        if cache.exists():
            from fkstudy.image.cache import load_image_cache

            images = load_image_cache(cache)[0]
            if len(images) >= n:
                return images[:n], str(cache)
    return np.random.default_rng(0).integers(0, 256, (n, 260, 260, 3), dtype=np.uint8), "random uint8"


def load_texts(n: int, field: str):
    """(n product texts as the text stage builds them, origin): catalog.parquet, else the raw CSV."""
    import pandas as pd

    from fkstudy.text.clean import select_text

    origin = CATALOG if CATALOG.exists() else RAW_CSV
    df = (pd.read_parquet(CATALOG, columns=["name", "description"]) if CATALOG.exists() else
          pd.read_csv(RAW_CSV, usecols=["product_name", "description"]).rename(columns={"product_name": "name"}))
    docs = [select_text(a, b, field) for a, b in zip(df["name"].fillna(""), df["description"].fillna(""))]
    return (docs * (n // len(docs) + 1))[:n], str(origin)


def image_bench(method: str, precision: str, n: int, threads: int, params):
    """(run(images) -> seconds, timed images, FLOP/image, facts) of image-registry entry `method`."""
    from fkstudy.image import deep, keras_models, torch_backbone, torch_models
    from fkstudy.image.cache import resized
    from fkstudy.image.registry import backbones
    from fkstudy.image.weights import WeightsPolicy
    from fkstudy.registry import Context

    section = getattr(params.deep_features, method)
    p = type(section).model_validate({**section.model_dump(), "precision": precision})
    images, origin = load_images(n + p.batch_size)
    images = resized(images, p.input_size)
    for module, name in ((keras_models, "load_keras"), (torch_models, "load_lite"), (torch_models, "load_clip")):
        setattr(module, name, functools.cache(getattr(module, name)))  # one model per worker, as in a stage
    policy = WeightsPolicy(dir=str(WEIGHTS), allow_random_init=True, allow_download=False)
    ctx = Context(ids=[], seed=0, n_jobs=threads, weights=policy)
    facts: dict = {"data": origin, "batch_size": p.batch_size, "input_size": p.input_size}

    def run(batch) -> float:
        ctx.timings.clear()
        X, rec = deep.extract(method, batch, p, ctx)
        facts.update(dim=int(X.shape[1]), weights=rec.get("weights"))
        return ctx.timings["extract_seconds"]

    run(images[:p.batch_size])  # warm-up: loads (once), traces, primes oneDNN
    one = images[:1]
    if method == "vgg16":
        flops = vgg16_conv_flops(p.input_size)
    elif method in backbones("torch"):  # same call as the worker's load: the memoised model
        net = torch_backbone.for_inference(torch_backbone.load(method, policy, 0)[0])
        features = torch_backbone.batch_features(method, net, {**p.model_dump(), "precision": "float32"})
        flops = torch_flops(lambda: features(one))
    elif method == "clip":
        model = torch_models.load_clip(p.arch, p.tag, policy, 0)[0]
        flops = torch_flops(lambda: model.encode_image(torch_models.clip_image_batch(model, one)))
    else:
        flops = None  # Keras EfficientNetB0 / MobileNetV3Small: not counted
    return run, images[p.batch_size:], flops, facts


def text_bench(method: str, precision: str, n: int, threads: int, params):
    """(run(docs) -> seconds, timed docs, FLOP/text, facts) of transformer text encoder `method`."""
    import torch

    from fkstudy.text.encoders import bert_model_dir, encode_mean_pooled, load_transformer
    from fkstudy.text.fill import fill_mpnet, mpnet_model_dir

    p = getattr(params.text_features, method)
    if method == "mpnet":
        fill_mpnet(WEIGHTS)  # joins its pip packages into weights/ once (sha256-checked)
    path = mpnet_model_dir(WEIGHTS) if method == "mpnet" else bert_model_dir(p.model_dir)
    torch.set_num_threads(threads)
    tokenizer, model = load_transformer(path)
    docs, origin = load_texts(n + p.batch_size, p.field)

    def run(batch) -> float:
        return seconds(lambda: encode_mean_pooled(tokenizer, model, batch, p.batch_size, p.max_length, precision))

    run(docs[:p.batch_size])  # warm-up
    timed = docs[p.batch_size:]
    first = tokenizer(timed[:p.batch_size], padding=True, truncation=True, max_length=p.max_length,
                      return_tensors="pt")
    flops = torch_flops(lambda: model(**first)) / len(first["input_ids"])
    lengths = [len(ids) for ids in tokenizer(timed, truncation=True, max_length=p.max_length)["input_ids"]]
    return run, timed, flops, {
        "data": origin, "batch_size": p.batch_size, "max_length": p.max_length, "dim": model.config.hidden_size,
        "weights": "pretrained", "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "flop_batch_padded_length": int(first["input_ids"].shape[1]), "mean_tokens": round(statistics.mean(lengths), 1)}


def worker(a) -> dict:
    load_start = os.getloadavg()[0]
    if a.worker.startswith("matmul_"):
        row = {"method": a.worker, "matmul_n": a.matmul_n,
               "gflops": matmul_peaks(a.worker[7:], a.matmul_n, a.matmul_repeats, a.threads)}
    else:
        import warnings

        from fkstudy.params import load_params

        text = a.worker in TEXT_METHODS
        n = a.n or (256 if text else 64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bench = text_bench if text else image_bench
            run, items, flops, facts = bench(a.worker, a.precision, n, a.threads, load_params(ROOT / "params.yaml"))
            rates = [len(items) / run(items) for _ in range(a.repeats)]
        best = max(rates)
        row = {"method": a.worker, "precision": a.precision, "kind": "text" if text else "image", "items": len(items),
               "items_per_s": round(best, 2), "items_per_s_median": round(statistics.median(rates), 2),
               "gflop_per_item": round(flops / 1e9, 3) if flops else None,
               "achieved_gflops": round(best * flops / 1e9, 1) if flops else None, **facts}
    row.update(threads=a.threads, peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               load_start=round(load_start, 2), load_end=round(os.getloadavg()[0], 2))
    return row


def spawn(a, name: str, precision: str = "float32", bench: _bench.Bench | None = None) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", name, "--precision", precision, "--repeats", str(a.repeats),
           "--threads", str(a.threads), "--matmul-n", str(a.matmul_n), "--matmul-repeats", str(a.matmul_repeats)]
    cmd += ["--n", str(a.n)] if a.n else []
    res = subprocess.run(cmd, capture_output=True, text=True)  # inherits the pinned environment
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        print(f"{name} {precision}: failed (exit {res.returncode})\n{res.stderr[-3000:]}", file=sys.stderr)
        return None
    print(lines[-1], bench.note() if bench else "", flush=True)
    return json.loads(lines[-1])


def cpu_flags() -> dict:
    info = Path("/proc/cpuinfo").read_text()
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    return {f: f in flags for f in ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")}


def print_table(rows: list[dict], peaks: dict, bench: _bench.Bench) -> None:
    print("\nmatmul peaks (GFLOP/s, n x n, same threads):", ", ".join(f"{k} {v}" for k, v in peaks.items()),
          bench.note())
    print(f"CPU: {bench.cpu}; load 1m: at the start > end of each row's worker")
    print(f"{'method':<19}{'precision':<10}{'items/s best / median':>22}{'GFLOP/item':>11}{'GFLOP/s':>9}"
          f"{'peak':>8}{'% peak':>8}{'RSS MB':>8}  load 1m    weights")
    for r in rows:
        frac = r.get("fraction_of_peak")
        cells = [f"{r['items_per_s']} / {r['items_per_s_median']}", r["gflop_per_item"] or "-",
                 r["achieved_gflops"] or "-", r["peak_gflops"], f"{100 * frac:.1f}" if frac else "-"]
        print(f"{r['method']:<19}{r['precision']:<10}{cells[0]:>22}{cells[1]:>11}{cells[2]:>9}{cells[3]:>8}"
              f"{cells[4]:>8}{r['peak_rss_mb']:>8}  {r['load_start']:>4}>{r['load_end']:<5} {r['weights']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=0, help="items timed per pass (default 64 images, 256 texts)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes (best and median reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--matmul-repeats", type=int, default=20)
    ap.add_argument("--numerics", choices=("avx512", "avx2", "native"),
                    help="FKSTUDY_NUMERICS tier (default: the environment's, else the stages' default)")
    ap.add_argument("--json", type=Path, help="write rows + machine facts here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    _bench.add_arguments(ap)
    a = ap.parse_args()
    bench = None if a.worker else _bench.Bench("bench_deep", a.allow_loaded)  # the load before it starts
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(a.threads)
    if a.numerics:
        os.environ["FKSTUDY_NUMERICS"] = a.numerics
    _bench.stage_process()  # the stages' process set-up: numerics.pin() (oneDNN / MKL caps), before numpy
    from fkstudy import numerics
    if a.worker:
        print(json.dumps(worker(a)))
        return
    facts = {**cpu_flags(), "numerics": numerics.describe(), "threads": a.threads, "repeats": a.repeats}
    peaks = {}
    for name in ("matmul_torch", "matmul_tf"):
        peaks.update((spawn(a, name, bench=bench) or {}).get("gflops", {}))
    peak = {p: max((v for k, v in peaks.items() if k.endswith(p)), default=None) for p in PRECISIONS}
    rows = []
    for method in a.methods:
        for precision in a.precisions:
            row = spawn(a, method, precision, bench)
            if row:
                row["peak_gflops"] = peak[precision]
                ok = row["achieved_gflops"] and peak[precision]
                row["fraction_of_peak"] = round(row["achieved_gflops"] / peak[precision], 4) if ok else None
                rows.append(row)
    print_table(rows, peaks, bench)
    print(f"\n{bench.cpu}, {bench.cpus} cpus, avx512_bf16={facts['avx512_bf16']} amx_bf16={facts['amx_bf16']}, "
          f"FKSTUDY_NUMERICS={facts['numerics']['mode']} (oneDNN ISA cap "
          f"{facts['numerics']['pinned'].get('ONEDNN_MAX_CPU_ISA') or 'none'}), "
          f"load 1m {bench.load_before} -> {_bench.load_1m()}, {bench.started}")
    if a.json:
        bench.write_json(a.json, {"machine": facts, "matmul_peaks": peaks, "peak_gflops": peak, "rows": rows})

if __name__ == "__main__":
    main()
