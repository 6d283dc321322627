"""The study's summary table, built only from metrics files written by the pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .formatting import RANDOM_INIT
from .reference import PUBLIC_BEST_ARI, SEED_ARI, SEED_TRAIN, TARGET_ARI


def _fmt(v, digits=3):
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else f"{v:.{digits}f}"


def cluster_table(metrics_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(metrics_dir).glob("*.json")):
        m = json.loads(path.read_text())
        name = path.stem
        row = dict(set=name, modality=name.split("_", 1)[0], method=name.split("_", 1)[-1], n=m["n"], dim=m["dim"],
                   weights=m.get("weights", "n/a"), primary=m["primary_reduction"], ari=m["ari"],
                   ari_std=m["ari_std"], silhouette=m["silhouette"], best_reduction=m["best_reduction"],
                   best_ari=m["best_ari"], perplexity=m.get("tsne_perplexity"),
                   ari_test_rows=m.get("ari_test_rows"))
        for how in ("none", "pca", "tsne"):
            if how in m:
                row[f"ari_{how}"] = m[how]["ari_mean"]
        row.update(seed_ari=SEED_ARI.get(name), public_best_ari=PUBLIC_BEST_ARI.get(name),
                   target_ari=TARGET_ARI.get(name))
        row["beats_seed"] = None if row["seed_ari"] is None else bool(row["ari"] > row["seed_ari"])
        row["meets_target"] = None if row["target_ari"] is None else bool(row["ari"] >= row["target_ari"])
        rows.append(row)
    return pd.DataFrame(rows)


SUMMARY_COLUMNS = ["feature set", "weights", "ARI (mean ± std)", "ARI test rows", "silhouette",
                   "ARI none / PCA / t-SNE", "seed study", "target"]


def weights_label(weights) -> str:
    return f"{RANDOM_INIT} (not comparable)" if weights == RANDOM_INIT else str(weights)


def summary_rows(table: pd.DataFrame) -> tuple[list[list[str]], list[str]]:
    """The clustering summary, one row per feature set (text first, best first), and each row's weights."""
    rows, weights = [], []
    if table.empty:
        return rows, weights
    for r in table.sort_values(["modality", "ari"], ascending=[False, False]).to_dict("records"):
        per = " / ".join(_fmt(r.get(f"ari_{h}")) or "–" for h in ("none", "pca", "tsne"))
        target = _fmt(r["target_ari"], 2)
        if target:
            target += " ✓" if r["meets_target"] else " ✗"
        primary = r["primary"]
        if primary == "tsne" and _fmt(r.get("perplexity")):
            primary += f", perplexity {r['perplexity']:g}"
        rows.append([r["set"], weights_label(r["weights"]),
                     f"{_fmt(r['ari'])} ± {_fmt(r['ari_std'])} ({primary})", _fmt(r.get("ari_test_rows")),
                     _fmt(r["silhouette"]), per, _fmt(r["seed_ari"]), target])
        weights.append(r["weights"])
    return rows, weights


def markdown_table(table: pd.DataFrame) -> str:
    """The README table: one row per feature set, random-init rows in bold."""
    rows, weights = summary_rows(table)
    head = "| " + " | ".join(SUMMARY_COLUMNS) + " |\n" + "|---" * len(SUMMARY_COLUMNS) + "|\n"
    lines = []
    for row, w in zip(rows, weights):
        if w == RANDOM_INIT:
            row = [row[0], f"**{RANDOM_INIT}** (not comparable)", *row[2:]]
        lines.append("| " + " | ".join(row) + " |")
    return head + "\n".join(lines) + "\n"


def load_tree(folder: str | Path, include: tuple[str, ...] | None = None) -> dict[str, dict]:
    """JSON files under `folder`, keyed by their path without suffix ("cluster/text_bert", "ingest"); with
    `include`, only those entries (files or folders relative to `folder`; a missing one is skipped)."""
    folder = Path(folder)
    paths = sorted(folder.rglob("*.json")) if include is None else sorted(
        p for e in include for p in ([folder / e] if (folder / e).is_file() else sorted((folder / e).rglob("*.json"))))
    out = {}
    for path in paths:
        try:
            out[path.relative_to(folder).with_suffix("").as_posix()] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
    return out


TRAIN_COLUMNS = ["model", "backbone", "variant", "weights", "framework", "test_accuracy", "macro_f1", "ari",
                 "val_accuracy", "backbone_params", "head_params", "params", "epochs_run", "best_epoch",
                 "n_train_views", "seed_accuracy", "seed_params"]


def train_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per trained backbone/variant (metrics/train/<K>.json) with the seed study's numbers. No
    wall-clock figures: they vary with the machine and its load (docs/benchmarks.md has them)."""
    rows = []
    for key, m in sorted(metrics.items()):
        if not key.startswith("train/"):
            continue
        k = key.split("/", 1)[1]
        seed = SEED_TRAIN.get(k, {})
        bp, hp = m.get("backbone_params"), m.get("head_params")
        rows.append(dict(
            model=k, backbone=m.get("backbone", k.rsplit("_", 1)[0]), variant=m.get("variant", k.rsplit("_", 1)[-1]),
            weights=m.get("weights", "n/a"), framework=m.get("framework"), test_accuracy=m.get("test_accuracy"),
            macro_f1=m.get("macro_f1"), ari=m.get("ari"), val_accuracy=m.get("val_accuracy"), backbone_params=bp,
            head_params=hp, params=(bp + hp) if bp is not None and hp is not None else None,
            epochs_run=m.get("epochs_run"), best_epoch=m.get("best_epoch"), n_train_views=m.get("n_train_views"),
            seed_accuracy=seed.get("test_accuracy"), seed_params=seed.get("params")))
    return pd.DataFrame(rows, columns=TRAIN_COLUMNS)


def replace_between_markers(text: str, new: str, begin: str, end: str) -> str:
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"markers {begin!r} … {end!r} not found in order")
    return text[: i + len(begin)] + "\n" + new + text[j:]
