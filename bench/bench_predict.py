"""Benchmark: batch prediction throughput and served latency of the registered model (issue items 4, 5).

    python bench/bench_predict.py                         # this checkout: its catalog, params and store
    python bench/bench_predict.py --repo /tmp/study --model-uri models:/flipkart-product-classifier/1 --write

Needs a repository where `dvc repro register` ran (data/interim/catalog.parquet, a registered model in
$MLFLOW_TRACKING_URI or the repository's mlflow.db). The products are the real test split (name,
description and the photo file), as the `register` stage scores them.

1. Batch CLI path: the registered model loaded once (`registry.load_predictor`, timed), then exactly what
   `python -m fkstudy predict --input --output` runs (read_products -> predict_products -> write_predictions)
   over the test products, text only (image column blank) and with photos: products/s.
2. Serving: `mlflow models serve --host 127.0.0.1 --env-manager local` on a free port (stopped at the end);
   after a warm-up, `--requests` sequential single-product requests, text only and with a photo (one
   keep-alive connection, like a client would hold): p50 / p95 latency in ms; then requests of
   `--serve-batch` products with photos: products/s.

Prints the figures; with --write also bench/serving_real_data.json (flat keys, with the machine's facts of
bench/_bench.py: cpu_model, cpus, load_average, loaded, measured_at): model_uri, n_products, n_jobs,
batch_size, model_load_s, batch_text_only_products_per_s, batch_with_photos_products_per_s,
serve_start_s, serve_requests, serve_text_only_p50_ms, serve_text_only_p95_ms, serve_with_photo_p50_ms,
serve_with_photo_p95_ms, serve_batch_rows, serve_batch_with_photos_products_per_s. Not a test.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import _bench

ROOT = _bench.ROOT
OUT = ROOT / "bench" / "serving_real_data.json"


def test_products(repo: Path) -> pd.DataFrame:
    from fkstudy.predict.model import raw_inputs

    params = yaml.safe_load((repo / "params.yaml").read_text())
    catalog = pd.read_parquet(repo / "data/interim/catalog.parquet")
    test = catalog[catalog["split"] == "test"].reset_index(drop=True)
    raw = Path(params["data"]["raw_dir"])
    return raw_inputs(test, (raw if raw.is_absolute() else repo / raw) / params["data"]["image_dir"])


def batch_path(predictor, frame: pd.DataFrame, work: Path, batch_size: int) -> tuple[float, int]:
    """(seconds, products) of the CLI's batch path on `frame` (written as a CSV first, as a user would)."""
    from fkstudy.predict import batch

    src, dst = work / "products.csv", work / "predictions.csv"
    frame.to_csv(src, index=False)
    t0 = time.perf_counter()
    out = batch.predict_products(predictor, batch.read_products(src), batch_size=batch_size)
    batch.write_predictions(out, dst)
    seconds = time.perf_counter() - t0
    failed = out[out["error"] != ""]
    if len(failed):
        raise SystemExit(f"{len(failed)} products failed, e.g. {failed['error'].iloc[0]}")
    return seconds, len(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """MLflow's model server (`models serve --host 127.0.0.1`) in its own process group."""

    def __init__(self, model_uri: str, log: Path):
        self.port = free_port()
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "--host", "127.0.0.1", "--port",
                                          str(self.port), "--env-manager", "local", "-m", model_uri],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the model server exited:\n{log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.5)
            if time.perf_counter() - t0 > 900:
                self.stop()
                raise SystemExit(f"no answer from the server:\n{log.read_text()[-3000:]}")
        self.start_seconds = time.perf_counter() - t0
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def invoke(self, records: list[dict]) -> float:
        body = json.dumps({"dataframe_records": records})
        t0 = time.perf_counter()
        self.conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        seconds = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {data[:500]!r}")
        preds = json.loads(data)["predictions"]
        if any(p["error"] for p in preds):
            raise SystemExit(f"a product failed: {[p['error'] for p in preds if p['error']][:3]}")
        return seconds

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=30)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


def latencies(server: Server, records: list[dict], n: int) -> dict:
    for r in records[:3]:
        server.invoke([r])  # warm-up
    ms = np.array([server.invoke([records[i % len(records)]]) for i in range(n)]) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT)
    ap.add_argument("--model-uri", default=None, help="default: models:/<register.model_name>@<register.alias>")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--requests", type=int, default=100, help="single-product requests per kind")
    ap.add_argument("--serve-batch", type=int, default=16, help="products per request for served throughput")
    ap.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("bench_predict", args.allow_loaded)
    repo = args.repo.resolve()
    sys.path.insert(0, str(repo / "src"))
    os.chdir(repo)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from fkstudy.predict import registry

    reg = yaml.safe_load((repo / "params.yaml").read_text())["register"]
    uri = args.model_uri or registry.model_uri(reg["model_name"], reg["alias"])
    products = test_products(repo)
    with_photo = products[products["image"] != ""].reset_index(drop=True)
    text_only = products.assign(image="")
    fig = {"model_uri": uri, "n_products": len(products), "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory(prefix="fkstudy-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        predictor = registry.load_predictor(uri, work / "model")
        fig["model_load_s"] = time.perf_counter() - t0
        fig["n_jobs"] = predictor.n_jobs
        batch_path(predictor, text_only.head(8), work, args.batch_size)  # warm-up (encoders loaded lazily)
        s, n = batch_path(predictor, text_only, work, args.batch_size)
        fig["batch_text_only_products_per_s"] = n / s
        s, n = batch_path(predictor, with_photo, work, args.batch_size)
        fig["batch_with_photos_products_per_s"] = n / s
        del predictor
        print(f"batch CLI path ({len(products)} test products, model load {fig['model_load_s']:.1f} s): "
              f"text only {fig['batch_text_only_products_per_s']:.1f} products/s, "
              f"with photos {fig['batch_with_photos_products_per_s']:.1f} products/s  {bench.note()}", flush=True)

        server = Server(uri, work / "serve.log")
        try:
            fig["serve_start_s"] = server.start_seconds
            recs_text = text_only[["name", "description", "image"]].to_dict("records")
            recs_photo = with_photo[["name", "description", "image"]].to_dict("records")
            fig["serve_requests"] = args.requests
            for kind, recs in (("text_only", recs_text), ("with_photo", recs_photo)):
                q = latencies(server, recs, args.requests)
                fig[f"serve_{kind}_p50_ms"], fig[f"serve_{kind}_p95_ms"] = q["p50"], q["p95"]
            b = args.serve_batch
            chunks = [recs_photo[i:i + b] for i in range(0, len(recs_photo), b)]
            seconds = sum(server.invoke(c) for c in chunks)
            fig["serve_batch_rows"] = b
            fig["serve_batch_with_photos_products_per_s"] = len(recs_photo) / seconds
        finally:
            server.stop()
    print(f"served (start {fig['serve_start_s']:.1f} s, {args.requests} single-product requests each): "
          f"text only p50 {fig['serve_text_only_p50_ms']:.0f} ms, p95 {fig['serve_text_only_p95_ms']:.0f} ms; "
          f"with a photo p50 {fig['serve_with_photo_p50_ms']:.0f} ms, p95 {fig['serve_with_photo_p95_ms']:.0f} ms; "
          f"{b} products with photos per request: {fig['serve_batch_with_photos_products_per_s']:.1f} products/s  "
          f"{bench.note()}")
    fig = {k: round(v, 2) if isinstance(v, float) else v for k, v in fig.items()}
    if args.write:
        bench.write_json(OUT, fig)


if __name__ == "__main__":
    main()
