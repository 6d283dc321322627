"""The study report, built only from the metrics, timings and plots the pipeline wrote.

`build(...)` returns the report as document blocks in the seed study's narrative order (data, text
cleaning, each text representation, each image representation, clustering comparison, supervised
results, multi-seed, fusion, conclusion); document.to_markdown / to_html render them. A stage that did
not run shows a visible "not run" note instead of its section's numbers. Rows from random-init models
are marked. The conclusion and the targets table are computed from the numbers, never typed.
"""
from __future__ import annotations


import math
from pathlib import Path

import pandas as pd

from . import reference as ref
from ..train.fusion import class_key  # the key fusion.json uses per class
from .document import RANDOM_INIT, Block, Bullets, Figure, Heading, Para, Table
from .summary import SUMMARY_COLUMNS, seconds, summary_rows, weights_label

TITLE = "Product classification feasibility study — generated report"
SECTIONS = ["1. Introduction", "2. Data overview", "3. Text cleaning", "4. Text representations",
            "5. Image representations", "6. Clustering comparison", "7. Supervised classification",
            "8. Multi-seed stability", "9. Fusion: text + image", "10. Conclusion"]

# What the report reads: the `report` stage in dvc.yaml lists each of these as a dependency (tested).
METRICS_READ = ("ingest.json", "clean_text.json", "prep_images.json", "text_features", "image_features", "cluster",
                "text_classifier", "train", "multiseed", "gradcam.json", "zero_shot.json", "fusion.json")
TIMINGS_READ = ("text_features", "image_features", "deep_features", "text_classifier", "train")
PLOTS_READ = ("ingest/class_balance.png", "ingest/category_tree.png", "ingest/spec_top_values.png",
              "prep_images/dashboard.png", "prep_images/samples.png", "text_features", "cluster", "text_classifier",
              "train", "gradcam", "multiseed", "fusion", "report/ari_comparison.png", "report/backbones.png")

TEXT_METHODS = {
    "bow": "Bag of words: token counts (scikit-learn), vocabulary fitted on the train split.",
    "tfidf": "TF-IDF weights (scikit-learn), vocabulary and idf fitted on the train split.",
    "word2vec": "Word2Vec (gensim, seeded, one worker) trained on the train split, averaged per product.",
    "glove": "Pretrained GloVe 6B-50d word vectors, averaged per product.",
    "bert": "all-MiniLM-L6-v2 sentence embeddings (BERT family, mean pooling).",
    "use": "Universal Sentence Encoder (multilingual v3) sentence embeddings.",
}
IMAGE_METHODS = {
    "classical": "Classical descriptor: SIFT summary, LBP, GLCM, Gabor, patch and colour statistics.",
    "sift_bovw": "SIFT bag of visual words, codebook fitted on train images only.",
    "orb_bovw": "ORB bag of visual words, codebook fitted on train images only.",
    "vgg16": "VGG16 convolutional features (ImageNet), global average pooling.",
    "efficientnet_lite0": "EfficientNet-Lite0 (torch, ImageNet) penultimate features.",
    "efficientnetb0": "EfficientNetB0 (Keras) pooled features.",
    "mobilenetv3small": "MobileNetV3Small (Keras) pooled features.",
    "clip": "CLIP ViT-B/32 image embeddings (open_clip).",
}


# ---------------------------------------------------------------- formatting

def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def f3(v, digits: int = 3) -> str:
    return "n/a" if _missing(v) else f"{v:.{digits}f}"


def _pm(m: dict, key: str) -> str:
    return f"{f3(m.get(key))} ± {f3(m.get(key + '_std'))}"


def _secs(v) -> str:
    return "n/a" if _missing(v) else f"{v:.1f} s"


def _int(v) -> str:
    return "n/a" if _missing(v) else f"{int(v):,}"


def _status(value, threshold) -> str:
    if _missing(value):
        return "not run"
    return "✓ met" if value >= threshold else "✗ not met"


def _not_run(what: str, stage: str) -> Para:
    return Para(f"Not run: {what} (stage `{stage}` has not written its metrics).", "note")


def _warn_random_init(names) -> Para:
    return Para(f"**{RANDOM_INIT}**: {', '.join(names)} ran without obtainable pretrained weights on this machine; "
                "their numbers only prove the plumbing and are not comparable.", "warn")


class _Figures:
    """Figures that exist under `root`; a missing one becomes a visible note."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __call__(self, path: str, caption: str) -> Block:
        return Figure(path, caption) if (self.root / path).is_file() else Para(f"({caption}: not produced)", "note")


def _ordered(names, preferred) -> list[str]:
    return [n for n in preferred if n in names] + sorted(set(names) - set(preferred))


def _group(metrics: dict, prefix: str) -> dict[str, dict]:
    return {k[len(prefix):]: m for k, m in sorted(metrics.items()) if k.startswith(prefix)}


def fusion_modes(fu: dict) -> list[str]:
    """The fusion candidates in metrics/fusion.json (each has <mode>_test_accuracy), e.g. concat, average_proba;
    `fusion` itself (the candidate selected on train+val) is not one of them."""
    return [k[: -len("_test_accuracy")] for k in sorted(fu) if k.endswith("_test_accuracy")
            and not k.startswith(("best_single", "text_", "image_", "fusion_"))]


def selected_fusion(fu: dict) -> str | None:
    """The fusion the stage selected without looking at test (its `fusion_*` keys), or None."""
    return fu.get("fusion_selected") if "fusion_test_accuracy" in fu else None



# ---------------------------------------------------------------- sections

def _introduction(metrics: dict, glance: dict[str, str]) -> list[Block]:
    ing = metrics.get("ingest", {})
    return [Heading(SECTIONS[0]),
            Para("Can an e-commerce marketplace assign a product to its category automatically, from its name, "
                 f"description and photo? This report answers it on {ing.get('products', '?')} products in "
                 f"{ing.get('categories', '?')} top-level categories, following the seed study's narrative: "
                 "unsupervised separability of each text and image representation (reduction → KMeans → ARI "
                 "against the true category), then supervised classifiers, their stability over seeds, and "
                 "text + image fusion."),
            Para("Every number is read from `metrics/` and `reports/timings/` as written by `dvc repro`; nothing "
                 "is typed by hand. Seed-study numbers and targets come from `src/fkstudy/report/reference.py`. "
                 f"Rows marked **{RANDOM_INIT}** come from models whose pretrained weights could not be obtained "
                 "here: not comparable."),
            Para("**At a glance** (details in the conclusion):"),
            Bullets([glance[k] for k in ("verdict", "unsupervised", "supervised") if k in glance])]


def _data(metrics: dict, fig: _Figures) -> list[Block]:
    ing, pi = metrics.get("ingest"), metrics.get("prep_images")
    out: list[Block] = [Heading(SECTIONS[1])]
    if not ing:
        return out + [_not_run("catalog validation", "ingest")]
    out += [Para(f"{ing.get('rows_read', '?')} rows read, {ing.get('products', '?')} products kept "
                 f"({ing.get('quarantined', '?')} quarantined), {ing.get('categories', '?')} top-level categories, "
                 f"{ing.get('images_ok', '?')} readable images. Every problem is listed with its file, row and reason "
                 "in `reports/ingest_problems.csv`."),
            Table(["problem", "rows"], [[k, v] for k, v in (ing.get("problems_by_kind") or {"none": 0}).items()]),
            Table(["category", "products"], [[k, v] for k, v in ing.get("per_class", {}).items()],
                  caption="Class balance"),
            Table(["split", "products"], [[k, v] for k, v in ing.get("per_split", {}).items()],
                  caption="Stratified, seeded split"),
            fig("plots/ingest/class_balance.png", "class balance"),
            fig("plots/ingest/category_tree.png", "category tree"),
            fig("plots/ingest/spec_top_values.png", "most frequent product specification values")]
    out.append(Heading("Images", 3))
    if not pi:
        return out + [_not_run("image decoding", "prep_images")]
    out += [Para(f"{pi.get('processed', '?')} photos decoded and resized once ({pi.get('failed', '?')} failed, "
                 f"{pi.get('skipped_at_ingest', '?')} missing at ingest, {pi.get('near_blank', '?')} near-blank, "
                 f"{pi.get('converted_to_rgb', '?')} converted to RGB, {pi.get('exif_rotated', '?')} EXIF-rotated). "
                 f"Median blur (Laplacian variance) {pi.get('blur_median', '?')}, "
                 f"contrast {pi.get('contrast_median', '?')}, "
                 f"brightness {pi.get('brightness_median', '?')}."),
            fig("plots/prep_images/dashboard.png", "image quality dashboard"),
            fig("plots/prep_images/samples.png", "sample photos per category")]
    return out


def _cleaning(metrics: dict, root: Path) -> list[Block]:
    ct = metrics.get("clean_text")
    out: list[Block] = [Heading(SECTIONS[2])]
    if not ct:
        return out + [_not_run("text cleaning", "clean_text")]
    out += [Para("Tokenize, lowercase, strip punctuation and digits, remove stopwords, then WordNet lemmas and "
                 "Snowball stems."),
            Table(["field", "words before → after", "reduction", "words per product",
                   "vocabulary → lemmas / stems"],
                  [[f, f"{m['words_before']:,} → {m['words_after']:,}", f"{m['reduction_pct']} %",
                    f"{m.get('avg_words_before', '?')} → {m.get('avg_words_after', '?')}",
                    f"{m['vocab_before']:,} → {m['vocab_lemmas']:,} / {m['vocab_stems']:,}"]
                   for f, m in ct.items() if isinstance(m, dict)])]
    ex = root / "plots/clean_text/examples.csv"
    if ex.is_file():
        df = pd.read_csv(ex, dtype=str, keep_default_na=False).head(5)
        cols = [c for c in ("raw_name", "lemmas_name", "stems_name") if c in df.columns]
        if cols:
            out.append(Table(cols, df[cols].values.tolist(), caption="Examples (product names)"))
    return out


def _reduction_table(c: dict) -> Table:
    rows = []
    for how in ("none", "pca", "tsne"):
        if how in c:
            r = c[how]
            rows.append([how + (" (primary)" if how == c.get("primary_reduction") else ""),
                         f"{f3(r.get('ari_mean'))} ± {f3(r.get('ari_std'))}", f3(r.get("nmi_mean")),
                         f3(r.get("matched_accuracy_mean")), f3(r.get("silhouette_clusters_mean")),
                         f3(r.get("silhouette_true_mean")), r.get("n_seeds", "?")])
    return Table(["reduction", "ARI", "NMI", "matched accuracy", "silhouette (clusters)", "silhouette (true classes)",
                  "seeds"], rows)


def _representations(modality: str, metrics: dict, timings: dict, fig: _Figures) -> list[Block]:
    text = modality == "text"
    section = SECTIONS[3] if text else SECTIONS[4]
    feats = _group(metrics, "text_features/" if text else "image_features/")
    clusters = {k[len(modality) + 1:]: m for k, m in _group(metrics, "cluster/").items()
                if k.startswith(modality + "_")}
    methods = _ordered(set(feats) | set(clusters), list(TEXT_METHODS if text else IMAGE_METHODS))
    out: list[Block] = [Heading(section)]
    if not methods:
        return out + [_not_run(f"{modality} features", "text_features" if text else "image_features")]
    desc = TEXT_METHODS if text else IMAGE_METHODS
    rows, marks = [], []
    for name in methods:
        f, c = feats.get(name, {}), clusters.get(name, {})
        w = f.get("weights", c.get("weights", "none"))
        t = timings.get(f"text_features/{name}") if text else (
            timings.get(f"deep_features/{name}") or timings.get(f"image_features/{name}"))
        cset = f"{modality}_{name}"
        rows.append([name, f.get("dim", c.get("dim", "?")), weights_label(w), _secs(seconds(t, "seconds")),
                     f"{f3(c.get('ari'))} ± {f3(c.get('ari_std'))}" if c else "not run",
                     f3(ref.SEED_ARI.get(cset)),
                     f"{ref.TARGET_ARI[cset]:.2f} {_status(c.get('ari'), ref.TARGET_ARI[cset])}"
                     if cset in ref.TARGET_ARI else ""])
        marks.append(RANDOM_INIT if w == RANDOM_INIT else "")
    out.append(Table(["method", "dim", "weights", "extraction time", "ARI (primary reduction)", "seed study",
                      "target"], rows, marks))
    if RANDOM_INIT in marks:
        out.append(_warn_random_init([m for m, k in zip(methods, marks) if k]))
    for i, name in enumerate(methods):
        f, c = feats.get(name, {}), clusters.get(name, {})
        cset = f"{modality}_{name}"
        out.append(Heading(f"{section.split('.')[0]}.{i + 1} {name}", 3))
        bits = [desc.get(name, "")]
        if f.get("source"):
            bits.append(f"Weights: {f['source']}.")
        if f.get("sha256"):
            bits.append(f"sha256 `{f['sha256'][:12]}…`.")
        if f.get("field"):
            bits.append(f"Text field: {f['field']}.")
        out.append(Para(" ".join(b for b in bits if b)))
        if f.get("weights") == RANDOM_INIT:
            out.append(_warn_random_init([name]))
        if not c:
            out.append(_not_run(f"clustering of {cset}", f"cluster@{cset}"))
            continue
        out.append(_reduction_table(c))
        compare = []
        if cset in ref.SEED_ARI:
            compare.append(f"seed study {ref.SEED_ARI[cset]:.3f}"
                           + (f" ({ref.SEED_NOTES[cset]})" if cset in ref.SEED_NOTES else ""))
        if cset in ref.PUBLIC_BEST_ARI:
            compare.append(f"best public reproduction {ref.PUBLIC_BEST_ARI[cset]:.2f}")
        if cset in ref.TARGET_ARI:
            compare.append(f"target {ref.TARGET_ARI[cset]:.2f}: {_status(c['ari'], ref.TARGET_ARI[cset])}")
        if compare:
            out.append(Para(f"ARI {c['ari']:.3f} ({c.get('primary_reduction')}) vs " + "; ".join(compare) + "."))
        out.append(fig(f"plots/cluster/{cset}/scatter.png",
                       f"{cset}: 2-D map coloured by true category and by cluster"))
        if text and name in ("bow", "tfidf"):
            out += [fig(f"plots/text_features/{name}_top_terms.png", f"{name}: top terms per category"),
                    fig(f"plots/text_features/{name}_wordclouds.png", f"{name}: word clouds per category")]
    return out


def _clustering(table: pd.DataFrame, fig: _Figures) -> list[Block]:
    out: list[Block] = [Heading(SECTIONS[5])]
    if table.empty:
        return out + [_not_run("clustering", "cluster")]
    rows, weights = summary_rows(table)
    out += [Para("KMeans with k = number of categories on each representation (after none / PCA / t-SNE); ARI and "
                 "silhouette are means over the clustering seeds."),
            Table(SUMMARY_COLUMNS, rows, [RANDOM_INIT if w == RANDOM_INIT else "" for w in weights]),
            fig("plots/report/ari_comparison.png", "ARI per representation, with the seed study's number")]
    both = table.dropna(subset=["ari_none", "ari_tsne"]) if {"ari_none", "ari_tsne"} <= set(table) else table.iloc[:0]
    if len(both):
        gain = both["ari_tsne"] - both["ari_none"]
        out.append(Para(f"t-SNE before KMeans raises ARI over the raw features for {int((gain > 0).sum())} of "
                        f"{len(both)} representations (median change {gain.median():+.3f})."))
    real = table[table["weights"] != RANDOM_INIT]
    for modality in ("text", "image"):
        sub = real[real["modality"] == modality]
        if len(sub):
            best = sub.sort_values("ari").iloc[-1]
            out += [Para(f"Best {modality} representation: **{best['set']}** (ARI {best['ari']:.3f} ± "
                         f"{best['ari_std']:.3f})."),
                    fig(f"plots/cluster/{best['set']}/contingency.png", f"{best['set']}: clusters vs categories"),
                    fig(f"plots/cluster/{best['set']}/centroid_distances.png",
                        f"{best['set']}: distances between category centroids")]
    aims = [t for t in targets({}, table) if t["what"].startswith("clustering ARI, best")]
    if aims:
        out.append(Bullets([f"Aim: {t['what'][len('clustering ARI, '):]} ARI ≥ {t['threshold']:.2f}: "
                            f"{f3(t['value'])}, {_status(t['value'], t['threshold'])}" for t in aims]))
    return out


def _best_text(metrics: dict):
    text = _group(metrics, "text_classifier/")
    return max(text.items(), key=lambda kv: kv[1].get("macro_f1", -1)) if text else (None, None)


def best_trained(train: pd.DataFrame):
    real = train[(train["weights"] != RANDOM_INIT) & train["test_accuracy"].notna()]
    return None if real.empty else real.sort_values(["test_accuracy", "macro_f1"]).iloc[-1]


def _supervised(metrics: dict, timings: dict, train: pd.DataFrame, fig: _Figures) -> list[Block]:
    out: list[Block] = [Heading(SECTIONS[6]),
                        Para("Every model is fitted on the train split, selected on validation, and scored once on "
                             "the held-out test split.")]
    # 7.1 text classifiers
    out.append(Heading("7.1 Text classifiers", 3))
    text = _group(metrics, "text_classifier/")
    if not text:
        out.append(_not_run("text classifiers", "text_classifier"))
    else:
        out.append(Table(["text set", "head", "C", "test accuracy", "macro-F1", "weighted-F1", "ARI",
                          "CV macro-F1 (train+val)", "fit time"],
                         [[k, m.get("head", "?"), m.get("C", ""), f3(m.get("test_accuracy")), f3(m.get("macro_f1")),
                           f3(m.get("weighted_f1")), f3(m.get("ari")),
                           f"{f3(m.get('cv_macro_f1'))} ± {f3(m.get('cv_macro_f1_std'))}",
                           _secs(seconds(timings.get(f"text_classifier/{k}"), "seconds", "fit_seconds"))]
                          for k, m in sorted(text.items(), key=lambda kv: -kv[1].get("macro_f1", 0))]))
        k, m = _best_text(metrics)
        out += [Para(f"Best: **{k}**, macro-F1 {f3(m.get('macro_f1'))} (target "
                     f"{ref.TARGET_TEXT_CLASSIFIER_MACRO_F1:.2f}: "
                     f"{_status(m.get('macro_f1'), ref.TARGET_TEXT_CLASSIFIER_MACRO_F1)})."),
                fig(f"plots/text_classifier/{k}/confusion.png", f"text classifier ({k}): confusion matrix"),
                fig(f"plots/text_classifier/{k}/per_class_f1.png", f"text classifier ({k}): per-class F1")]
    # 7.2 transfer learning
    out.append(Heading("7.2 Transfer learning: backbone comparison", 3))
    if train.empty:
        out.append(_not_run("transfer learning", "train"))
    else:
        out.append(Para("Frozen ImageNet backbone + dense head (Dense(1024, ReLU) → Dropout → softmax), early "
                        "stopping on validation; `augmented` adds flipped / rotated / zoomed / brightness-shifted "
                        "training views. As in the seed study's section 8.4: accuracy, training time, parameters."))
        rows, marks = [], []
        for r in train.sort_values(["backbone", "variant"], ascending=[False, False]).to_dict("records"):
            seed = ("" if _missing(r["seed_accuracy"]) else
                    f"{r['seed_accuracy']:.3f} / {_secs(r['seed_fit_seconds'])} / {_int(r['seed_params'])}")
            rows.append([r["model"], weights_label(r["weights"]), r["framework"] or "", f3(r["test_accuracy"]),
                         f3(r["macro_f1"]), f3(r["ari"]), _secs(r["fit_seconds"]), _secs(r["seconds_per_epoch"]),
                         f"{_int(r['epochs_run'])} ({_int(r['best_epoch'])})", _int(r["backbone_params"]),
                         _int(r["head_params"]), seed])
            marks.append(RANDOM_INIT if r["weights"] == RANDOM_INIT else "")
        out.append(Table(["model", "weights", "framework", "test accuracy", "macro-F1", "ARI", "fit time", "per epoch",
                          "epochs (best)", "backbone params", "head params",
                          "seed study accuracy / time / params"], rows, marks))
        if RANDOM_INIT in marks:
            out.append(_warn_random_init([r[0] for r, k in zip(rows, marks) if k]))
        out.append(fig("plots/report/backbones.png", "test accuracy per backbone and variant"))
        aug = _augmentation_effect(train)
        if aug:
            out.append(Para("Augmentation (augmented − base test accuracy, real weights): " + ", ".join(
                f"{b} {d:+.3f}" for b, d in aug.items()) + "."))
        best = best_trained(train)
        if best is not None:
            k = best["model"]
            out.append(Para(f"Best model with real weights: **{k}**, test accuracy {best['test_accuracy']:.3f}, "
                            f"macro-F1 {f3(best['macro_f1'])}."))
            out.append(_per_class_table(metrics, k))
            out += [fig(f"plots/train/{k}/history.png", f"{k}: loss and accuracy per epoch"),
                    fig(f"plots/train/{k}/confusion.png", f"{k}: confusion matrix (test)"),
                    fig(f"plots/train/{k}/per_class_f1.png", f"{k}: per-class F1 (test)"),
                    fig(f"plots/train/{k}/predictions.png", f"{k}: correct and incorrect test predictions")]
    # 7.3 Grad-CAM
    out.append(Heading("7.3 Grad-CAM: where the model looks", 3))
    gc = metrics.get("gradcam")
    if not gc:
        out.append(_not_run("Grad-CAM", "gradcam"))
    else:
        out += [Para(f"Grad-CAM on **{gc.get('model', '?')}** (layer `{gc.get('layer', '?')}`): "
                     f"{gc.get('n_correct', '?')} correctly and {gc.get('n_incorrect', '?')} wrongly classified test "
                     f"images ({gc.get('selection', 'selection not recorded')})."),
                fig("plots/gradcam/correct.png", "Grad-CAM: correct predictions"),
                fig("plots/gradcam/incorrect.png", "Grad-CAM: incorrect predictions")]
    # 7.4 zero-shot
    out.append(Heading("7.4 Zero-shot CLIP", 3))
    zs = metrics.get("zero_shot")
    if not zs:
        out.append(_not_run("zero-shot classification", "zero_shot"))
    elif zs.get("available"):
        out += [Para(f"CLIP {zs.get('arch', '?')} ({zs.get('tag', '?')}, weights {zs.get('weights', '?')}), prompt "
                     f"“{zs.get('prompt_template', '?')}”, no training: test accuracy {f3(zs.get('accuracy'))}, "
                     f"macro-F1 {f3(zs.get('macro_f1'))}, ARI {f3(zs.get('ari'))} on {zs.get('n_test', '?')} "
                     "products.")]
    else:
        out.append(Para(f"Unavailable: {zs.get('reason', 'no reason recorded')} (weights: "
                        f"{zs.get('weights', '?')}).", "warn" if zs.get("weights") == RANDOM_INIT else "note"))
    return out


def _augmentation_effect(train: pd.DataFrame) -> dict[str, float]:
    real = train[train["weights"] != RANDOM_INIT].set_index(["backbone", "variant"])["test_accuracy"]
    return {b: real[(b, "augmented")] - real[(b, "base")] for b in sorted({b for b, _ in real.index})
            if (b, "base") in real.index and (b, "augmented") in real.index}


def _per_class_table(metrics: dict, model: str) -> Table:
    pc = metrics.get(f"train/{model}", {}).get("per_class", {})
    _, text = _best_text(metrics)
    tpc = (text or {}).get("per_class", {})
    fu = metrics.get("fusion") or {}
    fmode = selected_fusion(fu)
    fpc = fu.get("fusion_per_class", {})
    rows = [[c, f3(v.get("precision")), f3(v.get("recall")), f3(v.get("f1")), v.get("support", ""),
             f3(ref.SEED_PER_CLASS_F1.get(c)), f3(tpc.get(c, {}).get("f1")), f3(fpc.get(class_key(c), {}).get("f1"))]
            for c, v in sorted(pc.items())]
    return Table(["category", "precision", "recall", "F1", "support", "seed study F1 (VGG16)", "best text F1",
                  f"fusion F1 ({fmode or 'not run'})"], rows, caption=f"Per class, test split: {model}")


def _multiseed(metrics: dict, fig: _Figures) -> list[Block]:
    out: list[Block] = [Heading(SECTIONS[7])]
    ms = _group(metrics, "multiseed/")
    if not ms:
        return out + [_not_run("multi-seed training", "multiseed")]
    out.append(Para("The same head trained on cached backbone features with different seeds: mean ± std and a 95 % "
                    "interval over seeds, so a difference between models can be told from seed noise."))
    rows, marks = [], []
    for b, m in ms.items():
        rows.append([b, weights_label(m.get("weights")), m.get("head", "?"), m.get("n_seeds", "?"),
                     _pm(m, "test_accuracy"),
                     f"{f3(m.get('test_accuracy_ci95_low'))}–{f3(m.get('test_accuracy_ci95_high'))}",
                     _pm(m, "macro_f1"), f"{f3(m.get('macro_f1_ci95_low'))}–{f3(m.get('macro_f1_ci95_high'))}",
                     f3(m.get("val_accuracy"))])
        marks.append(RANDOM_INIT if m.get("weights") == RANDOM_INIT else "")
    s = ref.SEED_MULTISEED
    rows.append([f"{s['backbone']} (seed study)", "imagenet", "", "", f"{s['test_accuracy']:.3f} ± "
                 f"{s['test_accuracy_std']:.3f}", "", "", "", ""])
    marks.append("")
    out.append(Table(["backbone", "weights", "head", "seeds", "test accuracy", "95 % interval", "macro-F1",
                      "95 % interval", "val accuracy"], rows, marks))
    m = ms.get(s["backbone"])
    if m and not _missing(m.get("test_accuracy_ci95_low")):
        inside = m["test_accuracy_ci95_low"] <= s["test_accuracy"] <= m["test_accuracy_ci95_high"]
        out.append(Para(f"{s['backbone']}: {m['test_accuracy']:.3f} vs the seed study's {s['test_accuracy']:.3f}; the "
                        f"seed study's mean is {'inside' if inside else 'outside'} this study's 95 % interval."))
    for b in ms:
        out += [fig(f"plots/multiseed/{b}/learning_curves.png", f"{b}: learning curves, one line per seed"),
                fig(f"plots/multiseed/{b}/per_class_f1.png", f"{b}: per-class F1 over seeds")]
    return out


def _fusion(metrics: dict, fig: _Figures) -> list[Block]:
    out: list[Block] = [Heading(SECTIONS[8])]
    fu = metrics.get("fusion")
    if not fu:
        return out + [_not_run("text + image fusion", "fusion")]
    cv = fu.get("cv", {})

    def row(name, key):
        c = cv.get(key, {})
        return [name, f3(fu.get(f"{key}_test_accuracy")), f3(fu.get(f"{key}_macro_f1")), f3(fu.get(f"{key}_ari")),
                f"{f3(c.get('cv_accuracy'))} ± {f3(c.get('cv_accuracy_std'))}" if c else "n/a",
                "" if key in ("text", "image") else f"{fu.get(f'{key}_minus_best_single', float('nan')):+.3f}"]

    modes = fusion_modes(fu)
    rows = [row(f"text only ({fu.get('text_set', '?')})", "text"),
            row(f"image only ({fu.get('image_set', '?')}, {fu.get('image_weights', '?')})", "image")]
    rows += [row(f"fusion candidate: {m}", m) for m in modes]
    if selected_fusion(fu):
        rows.append(row(f"**selected fusion: {selected_fusion(fu)}** (by {fu.get('select_by', '?')} on train+val)",
                        "fusion"))
    s = ref.SEED_FUSION
    rows += [["seed study: image only (VGG16)", f"{s['image_test_accuracy']:.3f}", "", "", "", ""],
             ["seed study: fusion (USE + VGG16)", f"{s['fusion_test_accuracy']:.3f}", f"{s['fusion_macro_f1']:.3f}",
              "", "", ""]]
    out += [Para(f"{fu.get('head', '?')} heads on {fu.get('text_set', '?')} text and {fu.get('image_set', '?')} image "
                 f"features, fitted on train ids only ({fu.get('n_train', '?')} train / {fu.get('n_val', '?')} val / "
                 f"{fu.get('n_test', '?')} test); no fit sees a test id. The seed study scored its fusion on an 80/20 "
                 "split of the 210 test products (42 products)."),
            Table(["model", "test accuracy", "macro-F1", "ARI", "CV accuracy (train+val)", "vs best single modality"],
                  rows)]
    best = selected_fusion(fu)
    if best:
        acc = fu["fusion_test_accuracy"]
        out += [Para(f"Selected fusion (chosen on train+val, never on test): **{best}**, test accuracy {acc:.3f} "
                     f"({fu.get('fusion_minus_best_single', float('nan')):+.3f} vs the best single modality); target "
                     f"{ref.TARGET_FUSION_TEST_ACCURACY:.2f}: {_status(acc, ref.TARGET_FUSION_TEST_ACCURACY)}."),
                fig("plots/fusion/fusion_confusion.png", f"fusion ({best}): confusion matrix")]
    out.append(fig("plots/fusion/per_class_f1.png", "per-class F1: text, image, fusion"))
    return out


# ---------------------------------------------------------------- targets and conclusion

def targets(metrics: dict, table: pd.DataFrame) -> list[dict]:
    """Each target of the issues with the measured value (None when its stage has not run) and met / not met."""
    out = []
    by_set = table.set_index("set") if not table.empty else pd.DataFrame()
    for s, thr in ref.TARGET_ARI.items():
        v = by_set.loc[s, "ari"] if s in by_set.index else None
        out.append(dict(what=f"clustering ARI, {s}", value=v, threshold=thr))
    for label, sets, thr in ref.GROUP_AIM_ARI:
        cand = [by_set.loc[s, "ari"] for s in sets if s in by_set.index and by_set.loc[s, "weights"] != RANDOM_INIT]
        out.append(dict(what=f"clustering ARI, {label}", value=max(cand) if cand else None, threshold=thr))
    _, text = _best_text(metrics)
    out.append(dict(what="text classifier macro-F1 (best set)", value=(text or {}).get("macro_f1"),
                    threshold=ref.TARGET_TEXT_CLASSIFIER_MACRO_F1))
    fu = metrics.get("fusion") or {}
    out.append(dict(what="text + image fusion test accuracy (selected on train+val)",
                    value=fu.get("fusion_test_accuracy"),
                    threshold=ref.TARGET_FUSION_TEST_ACCURACY))
    for t in out:
        t["met"] = None if _missing(t["value"]) else bool(t["value"] >= t["threshold"])
    return out


def findings(metrics: dict, table: pd.DataFrame, train: pd.DataFrame) -> dict[str, str]:
    """The conclusion's statements, each computed from the numbers: unsupervised, supervised, augmentation,
    zero_shot, random_init, verdict (a key is absent when nothing measured it)."""
    out: dict[str, str] = {}
    real = table[table["weights"] != RANDOM_INIT] if not table.empty else table
    if not real.empty:
        with_seed = real[real["seed_ari"].notna()]
        beat = with_seed[with_seed["ari"] > with_seed["seed_ari"]]
        best = {m: real[real["modality"] == m].sort_values("ari").iloc[-1] for m in ("text", "image")
                if (real["modality"] == m).any()}
        out["unsupervised"] = ("**Unsupervised.** Products separate into their categories without labels"
                               + "".join(f"; best {m} representation {b['set']} ARI {b['ari']:.3f}"
                                         for m, b in best.items())
                               + f". {len(beat)} of {len(with_seed)} representations with a seed-study number "
                               "beat the seed study.")
    sup = []
    k, m = _best_text(metrics)
    if m:
        sup.append(f"the best text classifier ({k}) reaches test accuracy {f3(m.get('test_accuracy'))} and macro-F1 "
                   f"{f3(m.get('macro_f1'))}")
    bt = best_trained(train)
    if bt is not None:
        seed = ref.SEED_TRAIN.get(bt["model"], {}).get("test_accuracy")
        sup.append(f"the best image model with real weights ({bt['model']}) {bt['test_accuracy']:.3f}"
                   + (f" (seed study {seed:.3f})" if seed else ""))
    ms = _group(metrics, "multiseed/").get(ref.SEED_MULTISEED["backbone"])
    if ms:
        sup.append(f"the {ref.SEED_MULTISEED['backbone']} head over {ms.get('n_seeds', '?')} seeds "
                   f"{_pm(ms, 'test_accuracy')} (95 % interval {f3(ms.get('test_accuracy_ci95_low'))}–"
                   f"{f3(ms.get('test_accuracy_ci95_high'))}; seed study {ref.SEED_MULTISEED['test_accuracy']:.3f} ± "
                   f"{ref.SEED_MULTISEED['test_accuracy_std']:.3f})")
    fu = metrics.get("fusion") or {}
    bm = selected_fusion(fu)
    if bm:
        d = fu.get("fusion_minus_best_single")
        sup.append(f"text + image fusion ({bm}) {fu['fusion_test_accuracy']:.3f}, "
                   + ("no gain over" if not _missing(d) and abs(d) < 5e-4 else
                      f"{d:+.3f} vs" if not _missing(d) else "compared with") + " the best single modality")
    if sup:
        out["supervised"] = "**Supervised.** On the held-out test split, " + "; ".join(sup) + "."
    aug = _augmentation_effect(train) if not train.empty else {}
    if aug:
        out["augmentation"] = ("**Augmentation** changed test accuracy by "
                               + ", ".join(f"{d:+.3f} ({b})" for b, d in aug.items()) + ".")
    zs = metrics.get("zero_shot")
    if zs:
        out["zero_shot"] = (f"**Zero-shot CLIP**: test accuracy {f3(zs.get('accuracy'))} without training."
                            if zs.get("available") else
                            f"**Zero-shot CLIP** unavailable: {zs.get('reason', 'no reason recorded')}.")
    rnd = sorted(table.loc[table["weights"] == RANDOM_INIT, "set"]) if not table.empty else []
    rnd += list(train.loc[train["weights"] == RANDOM_INIT, "model"]) if not train.empty else []
    if rnd:
        out["random_init"] = (f"Rows marked {RANDOM_INIT} ran without obtainable pretrained weights on this machine "
                              "and only prove the plumbing: " + ", ".join(rnd) + ".")
    done = [t for t in targets(metrics, table) if t["met"] is not None]
    accs = [v for v in ((m or {}).get("test_accuracy"), None if bt is None else bt["test_accuracy"],
                        fu.get("fusion_test_accuracy")) if not _missing(v)]
    verdict = "**Verdict.** "
    if accs:
        verdict += (f"Automatic classification is feasible: the best supervised model classifies "
                    f"{max(accs):.1%} of the held-out products correctly. ")
    met = sum(t["met"] for t in done)
    out["verdict"] = verdict + f"{met} of {len(done)} measured targets are met (see Targets, section 10)."
    return out


def _conclusion(metrics: dict, table: pd.DataFrame, train: pd.DataFrame) -> list[Block]:
    out: list[Block] = [Heading(SECTIONS[9])]
    out += [Para(text) for text in findings(metrics, table, train).values()]
    out.append(Heading("Targets", 3))
    out.append(Table(["target", "measured", "threshold", "status"],
                     [[t["what"], f3(t["value"]), f"≥ {t['threshold']:.2f}", _status(t["value"], t["threshold"])]
                      for t in targets(metrics, table)]))
    return out


def build(metrics: dict, timings: dict, table: pd.DataFrame, train: pd.DataFrame,
          root: str | Path = ".") -> list[Block]:
    """The whole report: `metrics` / `timings` as loaded by summary.load_tree (METRICS_READ, TIMINGS_READ),
    `table` = summary.cluster_table, `train` = summary.train_table; `root` is where plots/ lives."""
    fig = _Figures(Path(root))
    return (_introduction(metrics, findings(metrics, table, train)) + _data(metrics, fig)
            + _cleaning(metrics, Path(root))
            + _representations("text", metrics, timings, fig) + _representations("image", metrics, timings, fig)
            + _clustering(table, fig) + _supervised(metrics, timings, train, fig) + _multiseed(metrics, fig)
            + _fusion(metrics, fig) + _conclusion(metrics, table, train))
