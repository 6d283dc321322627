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
    out += _supervised(metrics)
    out += ["## 6. Conclusion", "", _conclusion(table), _supervised_conclusion(metrics), ""]
    return "\n".join(out)


def _supervised(metrics: dict) -> list[str]:
    """Section 5: classifiers on cached features (train fit, val selection, test report)."""
    text = {k.split("/", 1)[1]: m for k, m in sorted(metrics.items()) if k.startswith("text_classifier/")}
    ms, fu = metrics.get("multiseed"), metrics.get("fusion")
    if not (text or ms or fu):
        return []
    out = ["## 5. Supervised classification (train → select on val → report on test)", ""]
    if text:
        out += ["| text set | head | test accuracy | macro-F1 | CV macro-F1 (train+val) |", "|---|---|---|---|---|"]
        out += [f"| {k} | {m['head']} | {m['test_accuracy']:.3f} | {m['macro_f1']:.3f} | "
                f"{m['cv_macro_f1']:.3f} ± {m['cv_macro_f1_std']:.3f} |" for k, m in text.items()]
        out += ["", _img("text_classifier/bert/confusion.png", "text classifier confusion (bert)"), ""]
    if ms:
        out += [f"Multi-seed ({ms['n_seeds']} seeds) {ms['head']} head on {ms['features']} features "
                f"({ms['weights']}): test accuracy **{ms['test_accuracy']:.3f} ± {ms['test_accuracy_std']:.3f}** "
                f"(95 % CI {ms['test_accuracy_ci95_low']:.3f}–{ms['test_accuracy_ci95_high']:.3f}); "
                "the seed study reported 0.802 ± 0.007.", "",
                _img("multiseed/learning_curves.png", "learning curves"), ""]
    if fu:
        modes = [k[: -len("_test_accuracy")] for k in fu if k.endswith("_test_accuracy")
                 and not k.startswith(("best_single", "text_", "image_"))]
        out += [f"Fusion of {fu.get('text_set', '?')} text and {fu.get('image_set', '?')} image features "
                "(fit on train ids only, test never seen by any fit):", "",
                "| model | test accuracy | vs best single modality |", "|---|---|---|"]
        for k in ("text", "image"):
            if f"{k}_test_accuracy" in fu:
                out.append(f"| {k} only | {fu[f'{k}_test_accuracy']:.3f} | |")
        out += [f"| fusion ({m}) | {fu[f'{m}_test_accuracy']:.3f} | {fu.get(f'{m}_minus_best_single', 0):+.3f} |"
                for m in modes]
        out += ["", _img("fusion/per_class_f1.png", "per-class F1"), ""]
    return out


def _supervised_conclusion(metrics: dict) -> str:
    text = {k: m for k, m in metrics.items() if k.startswith("text_classifier/")}
    if not text:
        return ""
    best_key, best = max(text.items(), key=lambda kv: kv[1]["macro_f1"])
    out = f" Supervised, the best text classifier ({best_key.split('/')[1]}) reaches macro-F1 {best['macro_f1']:.3f} on test"
    ms = metrics.get("multiseed")
    if ms:
        out += f"; images alone ({ms['features']}) {ms['test_accuracy']:.3f} ± {ms['test_accuracy_std']:.3f} accuracy"
    return out + "."


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
