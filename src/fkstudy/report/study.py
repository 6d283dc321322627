"""The study report (Markdown), written only from metrics and plots the pipeline produced."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PLOTS = "../plots"  # the report lives in reports/


def _img(path: str, alt: str) -> str:
    return f"![{alt}]({PLOTS}/{path})" if (Path("plots") / path).exists() else f"_({alt}: not produced)_"


def _kv_table(d: dict, key: str, value: str) -> str:
    return f"| {key} | {value} |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in d.items()) + "\n"


def render_markdown(metrics: dict, table: pd.DataFrame, results_md: str) -> str:
    ing = metrics.get("ingest", {})
    ct = metrics.get("clean_text", {})
    out = ["# Product classification feasibility study — generated report",
           "",
           "Every number below is read from `metrics/` as written by `dvc repro`; nothing is typed by hand.",
           "",
           "## 1. Data",
           "",
           f"{ing.get('rows_read', '?')} rows read, {ing.get('products', '?')} products kept "
           f"({ing.get('quarantined', '?')} quarantined), {ing.get('categories', '?')} top-level categories, "
           f"{ing.get('images_ok', '?')} readable images. Problems found (all listed with file, row and reason in "
           "`reports/ingest_problems.csv`):",
           "",
           _kv_table(ing.get("problems_by_kind", {}) or {"none": 0}, "problem", "rows"),
           _kv_table(ing.get("per_class", {}), "category", "products"),
           f"Split (stratified, seeded): {ing.get('per_split', {})}.",
           "",
           _img("ingest/class_balance.png", "class balance"),
           "",
           _img("ingest/category_tree.png", "category tree"),
           "",
           _img("ingest/spec_top_values.png", "top specification values"),
           "",
           "## 2. Text cleaning",
           "",
           "| field | words before → after | reduction | vocabulary → lemmas / stems |",
           "|---|---|---|---|",
           *[f"| {f} | {m['words_before']} → {m['words_after']} | {m['reduction_pct']} % | "
             f"{m['vocab_before']} → {m['vocab_lemmas']} / {m['vocab_stems']} |"
             for f, m in ct.items() if isinstance(m, dict)],
           "",
           "## 3. Representations",
           ""]
    rows = []
    for key, m in sorted(metrics.items()):
        if key.startswith(("text_features/", "image_features/")):
            rows.append(f"| {key.split('/', 1)[1]} | {key.split('_', 1)[0]} | {m.get('dim')} | "
                        f"{m.get('weights', 'n/a')} | {m.get('seconds', '')} |")
    out += ["| method | modality | dim | weights | seconds |", "|---|---|---|---|---|", *rows, ""]
    for m in ("bow", "tfidf"):
        out += [_img(f"text_features/{m}_wordclouds.png", f"{m} word clouds"), ""]
    out += ["## 4. Clustering: PCA / t-SNE → KMeans (k = number of categories)", "",
            "ARI and silhouette are means over the seeds in `cluster.n_seeds`; every reduction is reported.", "",
            results_md, "", _img("report/ari_comparison.png", "ARI comparison"), ""]
    if not table.empty:
        best = table.sort_values("ari").iloc[-1]
        out += [f"Best representation: **{best['set']}** (ARI {best['ari']:.3f} ± {best['ari_std']:.3f}).", "",
                _img(f"cluster/{best['set']}/scatter.png", f"{best['set']} map"), "",
                _img(f"cluster/{best['set']}/contingency.png", f"{best['set']} contingency"), ""]
    out += ["## 5. Conclusion", "", _conclusion(table), ""]
    return "\n".join(out)


def _conclusion(table: pd.DataFrame) -> str:
    if table.empty:
        return "No clustering results yet."
    real = table[table["weights"] != "random-init"]
    with_seed = real[real["seed_ari"].notna()]
    beat = with_seed[with_seed["ari"] > with_seed["seed_ari"]]
    tgt = real[real["target_ari"].notna()]
    met = tgt[tgt["ari"] >= tgt["target_ari"]]
    missed = tgt[tgt["ari"] < tgt["target_ari"]]
    best = real.sort_values("ari").iloc[-1]
    text = (f"Unsupervised separation of the {int(best['n'])} products into categories is feasible: the best "
            f"representation, {best['set']}, reaches ARI {best['ari']:.3f}. {len(beat)} of {len(with_seed)} "
            f"representations with a seed-study number beat it; {len(met)} of {len(tgt)} reach their target.")
    if len(missed):
        text += " Short of target: " + ", ".join(f"{r['set']} {r['ari']:.3f} < {r['target_ari']:.2f}"
                                                 for r in missed.to_dict("records")) + "."
    rnd = table[table["weights"] == "random-init"]
    if len(rnd):
        text += (" Rows marked random-init ran without obtainable pretrained weights on this machine; their numbers "
                 "only prove the plumbing: " + ", ".join(rnd["set"]) + ".")
    return text
