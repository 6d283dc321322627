"""Determinism: the pipeline run twice from a clean state with the same params writes the same files.

The first run is the session's small real-subset repository (the one test_pipeline.py uses; its own
`dvc repro` then only adds the stages after these targets). The second run is a `git clone` of that
repository as committed — no outputs, no DVC cache, same params.yaml, same data subset — run
in its own directory with its own MLflow store. Every stage process gets a fresh random
PYTHONHASHSEED, so set or dict order that leaked into an output would show up here too.

Compared: the dvc.lock entry of every stage the second run ran (the hashes of its deps and outs: a run on
another machine with the same code, params and data leaves `git status` clean), every metrics/**/*.json byte
for byte, every feature file (data/features/**/*.npz) byte for byte, and no wall-clock figure in any metrics
file (those go to reports/timings/, git-ignored files that no stage declares).

Scope of the second run. By default the stages that load neither TensorFlow nor torch (CPU_TARGETS
and everything upstream of them: ingest, clean_text, text_features@{bow,tfidf,word2vec,glove,use},
prep_images, image_features@{classical,sift_bovw,orb_bovw}, and one or two of their cluster@ and
text_classifier@ stages), to keep CI short. FKSTUDY_DETERMINISM=full re-runs every target, deep extractors included.
Measured on the 2-core machine (n_jobs 2, both runs the same thread counts), full scope:
every metrics file and every feature file byte-identical, including VGG16 / EfficientNetB0 /
MobileNetV3Small (TensorFlow, oneDNN), EfficientNet-Lite0 / CLIP / MiniLM (torch) and t-SNE
(scikit-learn's Barnes-Hut with 2 OpenMP threads); so BOUNDED is empty. Different thread counts or
another CPU may change float reductions in TF/oneDNN, torch and t-SNE (the stages pin n_jobs for that
reason); such differences are not bounded meaningfully downstream, since t-SNE + KMeans can turn a
1e-7 change of a feature into a different clustering.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import run

pytestmark = pytest.mark.integration

# Every study stage up to the clustering and the text classifiers: ingest, clean_text,
# text_features@*, prep_images, image_features@*, pretrained, deep_features@*, cluster@*,
# text_classifier@*. Training, fusion and the report come after (test_pipeline.py runs them).
# image_features by name: the fixture may cluster fewer sets than there are extractors.
TARGETS = ("cluster", "text_classifier", "image_features")
CPU_TEXT = ("bow", "tfidf", "word2vec", "glove", "use")  # `use` is the packaged numpy port, no TF
# Every CPU feature extractor, and the seeded steps after them once each kind: t-SNE + KMeans on a fitted text set
# (Word2Vec) and on a KMeans-vocabulary image set (SIFT BoVW), the CV'd classifier on a sparse and a dense set.
# (Each further cluster@ / text_classifier@ stage runs the same code on another file: ~20 s of CI each.)
CPU_TARGETS = (*[f"text_features@{m}" for m in CPU_TEXT],
               *[f"image_features@{m}" for m in ("classical", "sift_bovw", "orb_bovw")],
               "cluster@text_word2vec", "cluster@image_sift_bovw", "text_classifier@tfidf", "text_classifier@use")

# Outputs a library keeps from being byte-identical between two processes, and the bound checked
# instead: {path relative to the repo: (reason, max absolute difference allowed)}. Empty when every
# compared output is byte-identical (measured: see the module docstring).
BOUNDED: dict[str, tuple[str, float]] = {}

TIMING_KEY = re.compile(r"(^|_)seconds$|per_second")


@pytest.fixture(scope="module")
def two_runs(small_repo, tmp_path_factory):
    run(["dvc", "repro", *TARGETS], small_repo)  # test_pipeline.py's full `dvc repro` reuses these outputs
    clone = tmp_path_factory.mktemp("determinism") / "repo"
    run(["git", "clone", "-q", str(small_repo), str(clone)], small_repo.parent)
    assert not (clone / "metrics").exists() and not (clone / "dvc.lock").exists()  # a clean state
    targets = TARGETS if os.environ.get("FKSTUDY_DETERMINISM") == "full" else CPU_TARGETS
    t0 = time.perf_counter()
    run(["dvc", "repro", *targets], clone, env={"MLFLOW_TRACKING_URI": f"sqlite:///{clone.parent / 'mlflow.db'}"})
    print(f"\nsecond run from a clean state ({len(targets)} targets): {time.perf_counter() - t0:.1f} s")
    return small_repo, clone


def _files(repo: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in repo.glob(pattern) if p.is_file())


def _numbers(obj, prefix=""):
    """Flatten a JSON object to {dotted key: value}."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def _bounded_json(a: Path, b: Path, bound: float) -> list[str]:
    fa, fb = _numbers(json.loads(a.read_text())), _numbers(json.loads(b.read_text()))
    if fa.keys() != fb.keys():
        return [f"keys differ: {sorted(fa.keys() ^ fb.keys())}"]
    bad = []
    for k in fa:
        va, vb = fa[k], fb[k]
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
            if abs(va - vb) > bound:
                bad.append(f"{k}: {va} vs {vb} (bound {bound})")
        elif va != vb:
            bad.append(f"{k}: {va!r} vs {vb!r}")
    return bad


def _bounded_npz(a: Path, b: Path, bound: float) -> list[str]:
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        if za["ids"].tolist() != zb["ids"].tolist() or str(za["meta"]) != str(zb["meta"]):
            return ["ids or meta differ"]
        diff = float(np.abs(za["X"].astype(np.float64) - zb["X"]).max()) if za["X"].size else 0.0
        return [] if diff <= bound else [f"max |ΔX| = {diff:.3g} > {bound}"]


def _compare(first: Path, second: Path, pattern: str, bounded_check) -> list[str]:
    """Every file the second run wrote (all of the first run's in the full scope) against the first's."""
    files = _files(second, pattern)
    assert files, f"no {pattern} in the second run"
    assert set(files) <= set(_files(first, pattern)), "the second run wrote files the first did not"
    problems = []
    for rel in files:
        a, b = first / rel, second / rel
        if a.read_bytes() == b.read_bytes():
            continue
        if rel in BOUNDED:
            problems += [f"{rel}: {p}" for p in bounded_check(a, b, BOUNDED[rel][1])]
        else:
            detail = _bounded_json(a, b, 0.0) if rel.endswith(".json") else _bounded_npz(a, b, 0.0)
            problems.append(f"{rel} differs: {detail[:5]}")
    return problems


def test_metrics_are_byte_identical(two_runs):
    _, second = two_runs
    expected = [f"metrics/{t.replace('@', '/')}.json" for t in CPU_TARGETS]
    assert set(expected) <= set(_files(second, "metrics/**/*.json")), "a CPU target wrote no metrics"
    problems = _compare(*two_runs, "metrics/**/*.json", _bounded_json)
    assert not problems, "\n".join(problems)


def test_feature_files_are_byte_identical(two_runs):
    problems = _compare(*two_runs, "data/features/**/*.npz", _bounded_npz)
    assert not problems, "\n".join(problems)


def test_dvc_lock_entries_are_identical(two_runs):
    """What a team member commits after re-running: the same lock, so `git status` stays clean."""
    import yaml

    first, second = (yaml.safe_load((r / "dvc.lock").read_text())["stages"] for r in two_runs)
    assert set(second) <= set(first)
    differ = {name: [k for k in ("cmd", "deps", "params", "outs") if entry.get(k) != first[name].get(k)]
              for name, entry in second.items() if entry != first[name]}
    assert not differ, f"dvc.lock entries differ between the two runs: {differ}"
    timings = [o["path"] for e in second.values() for o in e.get("outs", []) if "timings" in o["path"]]
    assert not timings, f"wall-clock files are DVC outputs: {timings}"


def test_no_wall_clock_in_metrics_and_timings_written(two_runs):
    first, _ = two_runs
    for rel in _files(first, "metrics/**/*.json"):
        keys = [k for k in _numbers(json.loads((first / rel).read_text())) if TIMING_KEY.search(k.split(".")[-1])]
        assert not keys, f"{rel} holds wall-clock figures {keys}: write them with fkstudy.runtime.write_timings"
    for stage in ("ingest", "clean_text", "prep_images"):
        assert json.loads((first / f"reports/timings/{stage}.json").read_text())["seconds"] >= 0
    for group in ("text_features", "image_features", "deep_features", "cluster", "text_classifier"):
        assert _files(first, f"reports/timings/{group}/*.json"), group
