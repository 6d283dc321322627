"""What every benchmark shares: it runs alone, says on what and how loaded beside its figures, and measures a
process tree's memory one way.

    ap = argparse.ArgumentParser(...); _bench.add_arguments(ap); args = ap.parse_args()
    bench = _bench.Bench("bench_x", args.allow_loaded)   # exits when the machine is busy (see below)
    print(f"decode: 41.2 images/s  {bench.note()}")      # [load 0.31 on 2 cpus, <CPU model>]
    bench.write_json(path, {"rows": rows})               # + cpu_model, cpus, load_average, loaded, measured_at

Timings measured beside other work are meaningless (2 shared cores), so a bench refuses to start when the
1-min load average is above LOAD_PER_CORE per core. `--allow-loaded` lets it run anyway (to check a code
path, not for a figure): its JSON then says `"loaded": true`.

`measure(cmd)` runs a command and samples the resident memory of its whole process tree (psutil) until it
exits; wait4 gives the exact high-water mark of its largest single process and the CPU seconds of the tree.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # fkstudy (for its atomic JSON writer), loaded only when writing
    sys.path.insert(0, str(ROOT / "src"))

LOAD_PER_CORE = 1.5
MB = 2 ** 20


def stage_process() -> None:
    """Set this process up as a stage's (stages/_bootstrap.py: pinned numerics, passive OpenMP waiting, no
    CUDA probing). Call it before numpy, torch, TensorFlow or OpenCV load."""
    sys.path.insert(0, str(ROOT / "stages"))
    try:
        import _bootstrap  # noqa: F401
    finally:
        sys.path.remove(str(ROOT / "stages"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--allow-loaded", action="store_true",
                    help=f"run even when the 1-min load average is above {LOAD_PER_CORE} per core "
                         "(the JSON then records \"loaded\": true; not for published figures)")


class Bench:
    """One benchmark run: the machine's facts, checked for load before it starts."""

    def __init__(self, name: str, allow_loaded: bool):
        self.name, self.cpu, self.cpus = name, cpu_model(), os.cpu_count() or 1
        self.load_before = load_1m()
        self.loaded = self.load_before / self.cpus > LOAD_PER_CORE
        self.started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        if self.loaded and not allow_loaded:
            sys.exit(f"{name}: the 1-min load average is {self.load_before} on {self.cpus} cpus (> {LOAD_PER_CORE} "
                     "per core): benchmarks run alone. Wait for the machine to be idle, or pass --allow-loaded to "
                     "check a code path (its JSON then records \"loaded\": true)")
        print(f"{name}: {self.cpu}, {self.cpus} cpus, load average (1 min) {self.load_before} at start"
              + ("  -- LOADED (--allow-loaded): these figures are not the machine's own" if self.loaded else ""),
              flush=True)

    def note(self) -> str:
        """What to print beside a figure: the 1-min load average now and the CPU model."""
        return f"[load {load_1m()} on {self.cpus} cpus, {self.cpu}]"

    def facts(self) -> dict:
        return {"cpu_model": self.cpu, "cpus": self.cpus, "measured_at": self.started,
                "load_average": {"before": self.load_before, "after": load_1m()}, "loaded": self.loaded}

    def write_json(self, path: str | os.PathLike, doc: dict) -> None:
        """doc plus the machine's facts, written atomically (replaced whole, never half-written)."""
        from fkstudy import files

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        files.write_json(path, {**doc, **self.facts()})
        print(f"wrote {path}" + ("  (\"loaded\": true)" if self.loaded else ""), flush=True)


# --------------------------------------------------------------------------- process-tree memory
def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(sum of RSS over root and its descendants, number of threads of the largest of them)."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total, biggest, threads = 0, 0, 0
    for p in procs:
        try:
            rss = p.memory_info().rss
            total += rss
            if rss > biggest:
                biggest, threads = rss, p.num_threads()
        except psutil.Error:  # exited between listing and reading
            continue
    return total, threads


def measure(cmd: list[str], cwd: Path, *, env: dict | None = None, log: Path | None = None, interval: float = 0.2,
            on_line: Callable[[str, float], None] | None = None) -> dict:
    """Run cmd (stdout and stderr appended to `log`; each line also handed to on_line(line, seconds since
    start) as it arrives); sample the tree's RSS every `interval` s until it exits.

    peak_tree_mb: the largest sampled sum over the tree (dvc + the stage's python + its workers), at
    peak_tree_at_s; peak_process_mb: the kernel's exact high-water mark of the largest single process
    (wait4's ru_maxrss); cpu_seconds: user + system time of the tree (every process its parent waited for);
    cores = cpu_seconds / seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reader = threading.Thread(target=_pump, args=(proc.stdout, log, on_line, t0), daemon=True)
    reader.start()
    peak = {"tree": 0, "at": 0.0, "threads": 0}
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(psutil.Process(proc.pid), interval, done, peak, t0), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)  # blocks: the wall time is exact, not rounded up to a sample
    wall = time.perf_counter() - t0
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    sampler.join()
    reader.join()
    peak_tree, peak_at, threads = peak["tree"], peak["at"], peak["threads"]
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 1), "cores": round(cpu / max(wall, 1e-9), 2),
            "peak_tree_mb": round(peak_tree / MB, 1), "peak_tree_at_s": round(peak_at, 1),
            "peak_process_mb": round(usage.ru_maxrss * 1024 / MB, 1), "threads": threads, "rc": proc.returncode}


def _sample(root: psutil.Process, interval: float, done: threading.Event, peak: dict, t0: float) -> None:
    while True:
        rss, n_threads = tree_rss(root)
        if rss > peak["tree"] and not done.is_set():
            peak.update(tree=rss, at=time.perf_counter() - t0, threads=n_threads)
        if done.wait(interval):
            return


def _pump(stream, log: Path | None, on_line, t0: float) -> None:
    with open(log, "ab") if log else open(os.devnull, "wb") as sink:
        for raw in stream:
            sink.write(raw)
            sink.flush()
            if on_line:
                on_line(raw.decode("utf-8", "replace"), time.perf_counter() - t0)
    stream.close()


def run_stages(repo: Path, stages: list[str], logs: Path, bench: Bench, interval: float = 0.1,
               env: dict | None = None) -> list[dict]:
    """`dvc repro -f --single-item <stage>` of each stage named (a foreach/matrix group name, e.g. `train`,
    means all its items; none = every stage), one at a time in pipeline order, each under measure()."""
    from _repo import pipeline_order  # pandas: not before a bench's own process set-up

    order = pipeline_order(repo)
    unknown = [s for s in stages if s not in order and not any(o.startswith(f"{s}@") for o in order)]
    if unknown:
        sys.exit(f"unknown stage(s) {unknown}; known: {order}")
    rows = []
    for stage in [o for o in order if not stages or o in stages or o.split("@")[0] in stages]:
        print(f"  {stage} ...", end="", flush=True)
        r = measure(["dvc", "repro", "-f", "--single-item", stage], repo, env=env, interval=interval,
                    log=logs / f"{stage.replace('@', '_')}.log")
        rows.append({"stage": stage, **r, "load_1m": load_1m()})
        print(f" {r['peak_tree_mb']:.0f} MB, {r['seconds']:.0f} s  {bench.note()}"
              + ("" if r["rc"] == 0 else f"  FAILED rc={r['rc']} (log {logs})"), flush=True)
    return rows


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""
