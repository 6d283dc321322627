"""Benchmark: the catalogue-scale jobs at 1×, 20× and 100× the real catalogue, in one process vs on a Ray cluster of
several nodes on this machine — rows/s, the overhead Ray adds, peak memory, and a projection for 1M products.

    python bench/bench_ray.py [--scales 1 20 100] [--jobs text image score] [--engines local ray]
                              [--text-method bert] [--image-method efficientnet_lite0] [--alias champion]
                              [--nodes 2] [--cpus-per-node 1] [--local-threads 2] [--chunk-rows 1024]
                              [--budget-min 60] [--json bench/ray_real_data.json]
    python bench/bench_ray.py --per-class 2 --scales 1 2 --allow-loaded      # a code-path check on tiny data

Jobs: `text` = catalog_text@<text-method>, `image` = catalog_image@<image-method>, `score` =
score_catalog@<alias> with the registered model of this checkout's store ($MLFLOW_TRACKING_URI, else its
mlflow.db: `dvc repro register` must have run). Catalogues (bench/_repo.products_csv): the real products
(id, name, description, photo path) replicated s× (copy k: id <uniq_id>-r<k>, same text and photo); 100× (any
scale >= --names-only-from) is names only (id, name), ~105k rows, and the image job skips it.

Each run is one `dvc repro --single-item <stage>` in a temporary git+DVC copy of this checkout (its weights dir
linked; the weights records written as the `pretrained` stage writes them), measured by bench/_bench.measure:
wall seconds and the peak RSS of the stage's process tree (the whole job in one process; the driver only on
Ray) — with a sampler summing the RSS of the cluster's processes (raylets, object stores, workers) on Ray.
The job's own seconds (reports/timings: without interpreter start-up and the plan) give rows/s. One process
runs with --local-threads threads (n_jobs); on Ray every node has --cpus-per-node CPUs and each worker
n_jobs=1 thread (the scoring model brings its own thread count, the same on both engines). `same bytes` compares
the outputs of both engines: the same only with the same threads (measured on the tiny check: MiniLM's bytes
did not move between 2 threads and 1, EfficientNet-Lite0's did; set --local-threads 1 for a like-for-like run).

Ray overhead: Ray's wall seconds minus one process's at the same scale (start-up, actors loading their model,
shipping chunks), and the ratio of rows/s. Projection: the per-node rate (Ray rows/s of the largest scale ÷
nodes) → 1M products on N nodes of --cpus-per-node CPUs each, plus the measured fixed cost; linear in N up to
the driver's own rate (it reads the CSV and writes the output: rows / plan seconds bounds it). Runs alone
(bench/_bench.py: refuses a loaded machine unless --allow-loaded). Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

import _bench
from _cluster import LocalCluster
from _repo import copy_repo, git_commit_all, link_tree, products_csv, real_data_dir, set_params, write_weights_records

ROOT = _bench.ROOT
JOBS = {"text": ("catalog_text", "text"), "image": ("catalog_image", "image"), "score": ("score_catalog", None)}
MB = 2 ** 20


def repo_copy(dest: Path, args) -> Path:
    """A git copy of this checkout, its weights dir linked, the weights records of the two representations."""
    repo = copy_repo(dest)
    if (ROOT / "weights").is_dir():
        link_tree(ROOT / "weights", repo / "weights")
    set_params(repo, {"data.raw_dir": str(real_data_dir()), "pipeline.catalog_text": [args.text_method],
                      "pipeline.catalog_image": [args.image_method], "pipeline.score_catalog": [args.alias],
                      "scale.chunk_rows": args.chunk_rows})
    write_weights_records(repo, [("text", args.text_method), ("image", args.image_method)])
    git_commit_all(repo)
    return repo


def stage_of(job: str, args) -> str:
    group = JOBS[job][0]
    return f"{group}@{args.alias if job == 'score' else args.text_method if job == 'text' else args.image_method}"


def output_of(repo: Path, job: str, args) -> Path:
    from fkstudy import paths

    if job == "score":
        return repo / paths.catalog_predictions(args.alias)
    method = args.text_method if job == "text" else args.image_method
    return repo / paths.catalog_features(JOBS[job][1], method)


class ClusterMemory:
    """Peak summed RSS of a cluster's processes while a run goes (sampled every `interval` s)."""

    def __init__(self, cluster: LocalCluster | None, interval: float = 0.5):
        self.cluster, self.interval, self.peak = cluster, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in self.cluster.processes():
                try:
                    total += p.memory_info().rss
                except Exception:  # exited between listing and reading
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.cluster is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.cluster is not None:
            self._thread.join()


def run_one(repo: Path, job: str, scale: int, engine: str, catalog: Path, rows: int, args, bench, cluster, env,
            logs: Path) -> dict:
    stage = stage_of(job, args)
    threads = args.local_threads if engine == "local" else 1
    set_params(repo, {"scale.catalog": str(catalog), "scale.engine": engine, "n_jobs": threads,
                      "scale.ray_address": cluster.address if engine == "ray" else "",
                      "scale.workers": args.nodes * args.cpus_per_node})
    print(f"  {stage} {scale}× ({rows} rows), {engine} ...", end="", flush=True)
    with ClusterMemory(cluster if engine == "ray" else None) as mem:
        r = _bench.measure(["dvc", "repro", "--single-item", stage], repo, env=env,
                           log=logs / f"{stage.replace('@', '_')}_{scale}x_{engine}.log")
    group, key = stage.split("@")
    timings = json.loads((repo / f"reports/timings/{group}/{key}.json").read_text()) if r["rc"] == 0 else {}
    job_s = timings.get("job_seconds", float("nan"))
    row = {"job": job, "stage": stage, "scale": scale, "rows": rows, "engine": engine,
           "threads": "model's" if job == "score" else threads,
           "wall_seconds": r["seconds"], "job_seconds": job_s, "plan_seconds": timings.get("plan_seconds"),
           "rows_per_second": round(rows / job_s, 2) if job_s == job_s and job_s > 0 else None,
           "peak_driver_mb": r["peak_tree_mb"], "peak_cluster_mb": round(mem.peak / MB, 1) if mem.peak else None,
           "cores": r["cores"], "rc": r["rc"], "load_1m": _bench.load_1m()}
    out = output_of(repo, job, args)
    row["output"] = out.read_bytes() if r["rc"] == 0 and out.is_file() and out.stat().st_size < 2 ** 31 else None
    print(f" {r['seconds']:.0f} s, {row['rows_per_second']} rows/s, driver {r['peak_tree_mb']:.0f} MB"
          + (f", cluster {row['peak_cluster_mb']:.0f} MB" if row["peak_cluster_mb"] else "")
          + ("" if r["rc"] == 0 else f"  FAILED rc={r['rc']} (log in {logs})") + f"  {bench.note()}", flush=True)
    return row


def projected(rows_done: list[dict], job: str, engine: str, rows: int) -> float | None:
    """Minutes a run of `rows` would take at the last measured rate of the same job and engine."""
    prev = [r for r in rows_done if r["job"] == job and r["engine"] == engine and r["rows_per_second"]]
    return rows / prev[-1]["rows_per_second"] / 60 if prev else None


def table(rows: list[dict]) -> str:
    head = ("| job | scale | rows | engine | threads | wall s | job s | rows/s | peak driver MB | peak cluster MB | "
            "same bytes |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['scale']}× | {r['rows']} | {r['engine']} | {r['threads']} | "
                     f"{r['wall_seconds']:.0f} | {r['job_seconds']:.0f} | {r['rows_per_second']} | "
                     f"{r['peak_driver_mb']:.0f} | {r['peak_cluster_mb'] or '–'} | {r.get('same_bytes', '–')} |")
    return "\n".join(lines)


def overhead_and_projection(rows: list[dict], nodes: int, cpus: int) -> str:
    out = ["", "Ray overhead (same job, same scale): Ray wall − one-process wall, and the rows/s ratio:"]
    for r in [r for r in rows if r["engine"] == "ray"]:
        loc = next((x for x in rows if x["engine"] == "local" and x["job"] == r["job"] and x["scale"] == r["scale"]),
                   None)
        if loc and loc["rows_per_second"] and r["rows_per_second"]:
            out.append(f"  {r['stage']} {r['scale']}×: {r['wall_seconds'] - loc['wall_seconds']:+.0f} s, "
                       f"{r['rows_per_second'] / loc['rows_per_second']:.2f}× the rows/s")
    out += ["", f"Projection for 1 000 000 products on N nodes of {cpus} CPU(s) (per-node rate = Ray rows/s at the "
            f"largest scale ÷ {nodes} nodes; + the measured fixed cost; driver ceiling = rows ÷ plan seconds):"]
    for job in JOBS:
        ray = [r for r in rows if r["job"] == job and r["engine"] == "ray" and r["rows_per_second"]]
        if not ray:
            continue
        big = max(ray, key=lambda r: r["rows"])
        per_node = big["rows_per_second"] / nodes
        fixed = big["wall_seconds"] - big["job_seconds"]
        ceiling = big["rows"] / big["plan_seconds"] if big.get("plan_seconds") else float("inf")
        cells = []
        for n in (1, 2, 4, 8, 16, 32, 64):
            rate = min(per_node * n, ceiling)
            cells.append(f"{n}: {(1e6 / rate + fixed) / 3600:.2f} h")
        out.append(f"  {big['stage']} ({per_node:.1f} rows/s per node, fixed {fixed:.0f} s, driver ceiling "
                   f"{ceiling:,.0f} rows/s): " + ", ".join(cells))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 20, 100])
    ap.add_argument("--names-only-from", type=int, default=100, help="scales from this one are names only")
    ap.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    ap.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--text-method", default="bert")
    ap.add_argument("--image-method", default="efficientnet_lite0")
    ap.add_argument("--alias", default="champion", help="score_catalog@<alias>: models:/<register.model_name>@<alias>")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cpus-per-node", type=int, default=1)
    ap.add_argument("--local-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk-rows", type=int, default=1024)
    ap.add_argument("--per-class", type=int, default=0, help="N real products per class (a code-path check)")
    ap.add_argument("--budget-min", type=float, default=90.0, help="skip a run projected to take longer")
    ap.add_argument("--json", type=Path, help="write the measurements here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (path printed)")
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("bench_ray", args.allow_loaded)
    from fkstudy import tracking

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri()}   # this checkout's store, from the copy
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    print(f"bench_ray: {tmp}; model store {env['MLFLOW_TRACKING_URI']}", flush=True)
    cluster = LocalCluster(args.nodes, args.cpus_per_node).start_in_background() if "ray" in args.engines else None
    rows: list[dict] = []
    try:
        repo = repo_copy(tmp / "repo", args)
        logs = tmp / "logs"
        logs.mkdir()
        if cluster is not None:
            env.update(cluster.env)
        for scale in sorted(args.scales):
            names_only = scale >= args.names_only_from
            columns = ("id", "name") if names_only else ("id", "name", "description", "image")
            catalog = products_csv(tmp / f"catalog_{scale}x.csv", copies=scale, columns=columns,
                                   per_class=args.per_class)
            n = len(pd.read_csv(catalog, dtype=str, keep_default_na=False))
            for job in args.jobs:
                if job == "image" and names_only:
                    print(f"  {stage_of(job, args)} {scale}×: skipped (names only)", flush=True)
                    continue
                done = {}
                for engine in args.engines:
                    minutes = projected(rows, job, engine, n)
                    if minutes is not None and minutes > args.budget_min:
                        print(f"  {stage_of(job, args)} {scale}× {engine}: skipped, projected {minutes:.0f} min "
                              f"(> --budget-min {args.budget_min:g})", flush=True)
                        continue
                    if engine == "ray":
                        cluster.ready()
                    done[engine] = run_one(repo, job, scale, engine, catalog, n, args, bench, cluster, env, logs)
                if len(done) == 2 and all(d["output"] is not None for d in done.values()):
                    same = "yes" if done["local"]["output"] == done["ray"]["output"] else "no"
                    for d in done.values():
                        d["same_bytes"] = same
                for d in done.values():
                    d.pop("output", None)
                    rows.append(d)
                if args.json:
                    bench.write_json(args.json, {"nodes": args.nodes, "cpus_per_node": args.cpus_per_node,
                                                 "chunk_rows": args.chunk_rows, "rows": rows})
    finally:
        if cluster is not None:
            cluster.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"CPU: {bench.cpu}; load average (1 min) {bench.load_before} at start, {_bench.load_1m()} now; Ray: "
          f"{args.nodes} nodes × {args.cpus_per_node} CPU(s) on this machine")
    print(table(rows))
    print(overhead_and_projection(rows, args.nodes, args.cpus_per_node))


if __name__ == "__main__":
    main()
