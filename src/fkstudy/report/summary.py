"""The study's summary table, built only from metrics files written by the pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .reference import PUBLIC_BEST_ARI, SEED_ARI, TARGET_ARI


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
                   best_ari=m["best_ari"])
        for how in ("none", "pca", "tsne"):
            if how in m:
                row[f"ari_{how}"] = m[how]["ari_mean"]
        row.update(seed_ari=SEED_ARI.get(name), public_best_ari=PUBLIC_BEST_ARI.get(name),
                   target_ari=TARGET_ARI.get(name))
        row["beats_seed"] = None if row["seed_ari"] is None else bool(row["ari"] > row["seed_ari"])
        row["meets_target"] = None if row["target_ari"] is None else bool(row["ari"] >= row["target_ari"])
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """The README / report table: one row per feature set."""
    head = ("| feature set | weights | ARI (mean ± std) | silhouette | ARI none / PCA / t-SNE | seed study | "
            "target |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for r in table.sort_values(["modality", "ari"], ascending=[False, False]).to_dict("records"):
        weights = r["weights"] if r["weights"] != "random-init" else "**random-init** (not comparable)"
        per = " / ".join(_fmt(r.get(f"ari_{h}")) or "–" for h in ("none", "pca", "tsne"))
        target = _fmt(r["target_ari"], 2)
        if target:
            target += " ✓" if r["meets_target"] else " ✗"
        lines.append(f"| {r['set']} | {weights} | {_fmt(r['ari'])} ± {_fmt(r['ari_std'])} ({r['primary']}) | "
                     f"{_fmt(r['silhouette'])} | {per} | {_fmt(r['seed_ari'])} | {target} |")
    return head + "\n".join(lines) + "\n"


def replace_between_markers(text: str, new: str, begin: str, end: str) -> str:
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"markers {begin!r} … {end!r} not found in order")
    return text[: i + len(begin)] + "\n" + new + text[j:]
