"""The report's first sections as document blocks: introduction, data, text cleaning, the text and image
representations, the clustering comparison; plus the helpers every section uses (figures, "not run" notes,
random-init warnings).

Each section function returns its body; study.build puts the section heading in front. Method descriptions
and the preferred method order come from the text and image registries.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..image.registry import IMAGE
from ..text.registry import TEXT
from . import reference as ref
from .document import Block, Bullets, Figure, Heading, Para, Table
from .findings import group, targets
from .formatting import RANDOM_INIT, f3, status
from .summary import SUMMARY_COLUMNS, summary_rows, weights_label


class Figures:
    """Figures that exist under `root`; a missing one becomes a visible note."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __call__(self, path: str, caption: str) -> Block:
        return Figure(path, caption) if (self.root / path).is_file() else Para(f"({caption}: not produced)", "note")


def not_run(what: str, stage: str) -> Para:
    return Para(f"Not run: {what} (stage `{stage}` has not written its metrics).", "note")


def warn_random_init(names) -> Para:
    return Para(f"**{RANDOM_INIT}**: {', '.join(names)} ran without obtainable pretrained weights on this machine; "
                "their numbers only prove the plumbing and are not comparable.", "warn")


# Where the cost figures live: wall-clock times depend on the machine and on what else runs on it, so the
# report (rebuilt byte for byte from the same metrics) carries none; the benchmarks measure them alone.
BENCHMARKS = "docs/benchmarks.md"


def cost_note(what: str) -> Para:
    """One sentence in place of a wall-clock figure: where that cost is measured."""
    return Para(f"{what}: see `{BENCHMARKS}`, measured alone on a quiet machine; "
                "this report, which a re-run reproduces byte for byte, carries no wall-clock figure.")


def introduction(metrics: dict, glance: dict[str, str]) -> list[Block]:
    """`glance`: findings.findings(...), whose verdict and headline statements open the report."""
    ing = metrics.get("ingest", {})
    return [Para("Can an e-commerce marketplace assign a product to its category automatically, from its name, "
                 f"description and photo? This report answers it on {ing.get('products', '?')} products in "
                 f"{ing.get('categories', '?')} top-level categories, following the seed study's narrative: "
                 "unsupervised separability of each text and image representation (reduction → KMeans → ARI "
                 "against the true category), then supervised classifiers, their stability over seeds, and "
                 "text + image fusion."),
            Para("Every number is read from `metrics/`, `plots/` and `reports/label_issues.csv` as written by "
                 "`dvc repro`; nothing "
                 "is typed by hand, and none is a wall-clock time (costs are in "
                 f"`{BENCHMARKS}`). Seed-study numbers and targets come from `src/fkstudy/report/reference.py`. "
                 f"Rows marked **{RANDOM_INIT}** come from models whose pretrained weights could not be obtained "
                 "here: not comparable."),
            Para("**At a glance** (details in the conclusion):"),
            Bullets([glance[k] for k in ("verdict", "unsupervised", "supervised") if k in glance])]


def data(metrics: dict, fig: Figures) -> list[Block]:
    ing, pi = metrics.get("ingest"), metrics.get("prep_images")
    if not ing:
        return [not_run("catalog validation", "ingest")]
    out: list[Block] = [
        Para(f"{ing.get('rows_read', '?')} rows read, {ing.get('products', '?')} products kept "
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
        fig("plots/ingest/spec_top_values.png", "most frequent product specification values"),
        Heading("Images", 3)]
    if not pi:
        return out + [not_run("image decoding", "prep_images")]
    return out + [
        Para(f"{pi.get('processed', '?')} photos decoded and resized once ({pi.get('failed', '?')} failed, "
             f"{pi.get('skipped_at_ingest', '?')} missing at ingest, {pi.get('near_blank', '?')} near-blank, "
             f"{pi.get('converted_to_rgb', '?')} converted to RGB, {pi.get('exif_rotated', '?')} EXIF-rotated). "
             f"Median blur (Laplacian variance) {pi.get('blur_median', '?')}, "
             f"contrast {pi.get('contrast_median', '?')}, "
             f"brightness {pi.get('brightness_median', '?')}."),
        fig("plots/prep_images/dashboard.png", "image quality dashboard"),
        fig("plots/prep_images/samples.png", "sample photos per category")]


def cleaning(metrics: dict, root: Path) -> list[Block]:
    ct = metrics.get("clean_text")
    if not ct:
        return [not_run("text cleaning", "clean_text")]
    out: list[Block] = [
        Para("Tokenize, lowercase, strip punctuation and digits, remove stopwords, then WordNet lemmas and "
             "Snowball stems."),
        Table(["field", "words before → after", "reduction", "words per product", "vocabulary → lemmas / stems"],
              [[f, f"{m['words_before']:,} → {m['words_after']:,}", f"{m['reduction_pct']} %",
                f"{m.get('avg_words_before', '?')} → {m.get('avg_words_after', '?')}",
                f"{m['vocab_before']:,} → {m['vocab_lemmas']:,} / {m['vocab_stems']:,}"]
               for f, m in ct.items() if isinstance(m, dict)])]
    ex = Path(root) / "plots/clean_text/examples.csv"
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


def _ordered(names, preferred) -> list[str]:
    return [n for n in preferred if n in names] + sorted(set(names) - set(preferred))


def _comparison(cset: str, c: dict) -> Para | None:
    """One line: this ARI vs the seed study, the best public reproduction and the target."""
    compare = []
    if cset in ref.SEED_ARI:
        compare.append(f"seed study {ref.SEED_ARI[cset]:.3f}"
                       + (f" ({ref.SEED_NOTES[cset]})" if cset in ref.SEED_NOTES else ""))
    if cset in ref.PUBLIC_BEST_ARI:
        compare.append(f"best public reproduction {ref.PUBLIC_BEST_ARI[cset]:.2f}")
    if cset in ref.TARGET_ARI:
        compare.append(f"target {ref.TARGET_ARI[cset]:.2f}: {status(c['ari'], ref.TARGET_ARI[cset])}")
    if not compare:
        return None
    return Para(f"ARI {c['ari']:.3f} ({c.get('primary_reduction')}) vs " + "; ".join(compare) + ".")


def representations(modality: str, metrics: dict, fig: Figures, number: int) -> list[Block]:
    """Section `number` (4: text, 5: image): one table of every method, then a subsection per method."""
    text = modality == "text"
    registry = TEXT if text else IMAGE
    feats = group(metrics, "text_features/" if text else "image_features/")
    clusters = {k[len(modality) + 1:]: m for k, m in group(metrics, "cluster/").items()
                if k.startswith(modality + "_")}
    methods = _ordered(set(feats) | set(clusters), list(registry))
    if not methods:
        return [not_run(f"{modality} features", "text_features" if text else "image_features")]
    rows, marks = [], []
    for name in methods:
        f, c = feats.get(name, {}), clusters.get(name, {})
        w = f.get("weights", c.get("weights", "none"))
        cset = f"{modality}_{name}"
        rows.append([name, f.get("dim", c.get("dim", "?")), weights_label(w),
                     f"{f3(c.get('ari'))} ± {f3(c.get('ari_std'))}" if c else "not run",
                     f3(ref.SEED_ARI.get(cset)),
                     f"{ref.TARGET_ARI[cset]:.2f} {status(c.get('ari'), ref.TARGET_ARI[cset])}"
                     if cset in ref.TARGET_ARI else ""])
        marks.append(RANDOM_INIT if w == RANDOM_INIT else "")
    out: list[Block] = [Table(["method", "dim", "weights", "ARI (primary reduction)", "seed study", "target"],
                              rows, marks),
                        cost_note(f"Extraction time per {modality} method")]
    if RANDOM_INIT in marks:
        out.append(warn_random_init([m for m, k in zip(methods, marks) if k]))
    unrun = not_in_pipeline(registry, methods, metrics.get("pretrained", {}), modality)
    if unrun:
        out.append(unrun)
    for i, name in enumerate(methods):
        f, c = feats.get(name, {}), clusters.get(name, {})
        cset = f"{modality}_{name}"
        out.append(Heading(f"{number}.{i + 1} {name}", 3))
        bits = [registry[name].description if name in registry else ""]
        if f.get("source"):
            bits.append(f"Weights: {f['source']}.")
        if f.get("sha256"):
            bits.append(f"sha256 `{f['sha256'][:12]}…`.")
        if f.get("field"):
            bits.append(f"Text field: {f['field']}.")
        out.append(Para(" ".join(b for b in bits if b)))
        if f.get("weights") == RANDOM_INIT:
            out.append(warn_random_init([name]))
        if not c:
            out.append(not_run(f"clustering of {cset}", f"cluster@{cset}"))
            continue
        out.append(_reduction_table(c))
        compared = _comparison(cset, c)
        if compared:
            out.append(compared)
        out.append(fig(f"plots/cluster/{cset}/scatter.png",
                       f"{cset}: 2-D map coloured by true category and by cluster"))
        if text and name in ("bow", "tfidf"):
            out += [fig(f"plots/text_features/{name}_top_terms.png", f"{name}: top terms per category"),
                    fig(f"plots/text_features/{name}_wordclouds.png", f"{name}: word clouds per category")]
    return out


def not_in_pipeline(registry, ran, pretrained: dict, modality: str) -> Para | None:
    """The registered methods this run did not include, and why: an optional representation whose weights no
    package carries here (metrics/pretrained.json says `missing`) is out of the default pipeline, since random
    weights would only give meaningless numbers; it runs once its weights are in the weights dir and its name is
    added to the pipeline lists."""
    names = [n for n in registry if n not in ran]
    if not names:
        return None
    missing = [n for n in names if (pretrained.get(n) or {}).get("weights") == "missing"]
    other = [n for n in names if n not in missing]
    bits = []
    if missing:
        bits.append(f"{', '.join(missing)}: no pretrained weights here (download-only, no network), so not in the "
                    f"default pipeline — random weights would prove only the plumbing (the integration tests run them). "
                    f"With their weights in the weights dir, add them to `pipeline.{'deep' if modality == 'image' else 'text'}` "
                    "and `pipeline.cluster` (and `pipeline.backbones` to train on them)")
    if other:
        bits.append(f"{', '.join(other)}: registered but not in this run's `pipeline` lists")
    return Para("Not run: " + "; ".join(bits) + ".", "note")


def clustering(table: pd.DataFrame, fig: Figures) -> list[Block]:
    if table.empty:
        return [not_run("clustering", "cluster")]
    rows, weights = summary_rows(table)
    out: list[Block] = [
        Para("KMeans with k = number of categories on each representation (after none / PCA / t-SNE); ARI and "
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
    aims = [t for t in targets({}, table) if t["measure"] == "cluster_best" or len(t["sets"]) > 1]  # group aims
    if aims:
        out.append(Bullets([f"Aim: {t['what']} ≥ {t['threshold']:.2f} ({t['how']}): {f3(t['value'])}"
                            + (f" ({t['source']})" if t["source"] else "") + f", {status(t['value'], t['threshold'])}"
                            for t in aims]))
    return out
