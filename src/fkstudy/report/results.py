"""The report's last sections as document blocks: supervised classification (text classifiers, transfer
learning, Grad-CAM, zero-shot CLIP), multi-seed stability, text + image fusion and the conclusion.

Each section function returns its body; study.build puts the section heading in front.
"""
from __future__ import annotations

import pandas as pd

from ..evaluate.metrics import class_key  # the key metrics/fusion.json uses per class
from . import reference as ref
from .document import Block, Heading, Para, Table
from .findings import (
    augmentation_effect,
    best_text,
    best_trained,
    fusion_modes,
    group,
    selected_fusion,
    targets,
)
from .formatting import RANDOM_INIT, count, f3, missing, plus_minus, secs, status
from .sections import Figures, not_run, warn_random_init
from .summary import seconds, weights_label


def supervised(metrics: dict, timings: dict, train: pd.DataFrame, fig: Figures) -> list[Block]:
    return ([Para("Every model is fitted on the train split, selected on validation, and scored once on the "
                  "held-out test split."),
             Heading("7.1 Text classifiers", 3)] + _text_classifiers(metrics, timings, fig)
            + [Heading("7.2 Transfer learning: backbone comparison", 3)] + _transfer(metrics, train, fig)
            + [Heading("7.3 Grad-CAM: where the model looks", 3)] + _gradcam(metrics, fig)
            + [Heading("7.4 Zero-shot CLIP", 3)] + _zero_shot(metrics))


def _text_classifiers(metrics: dict, timings: dict, fig: Figures) -> list[Block]:
    text = group(metrics, "text_classifier/")
    if not text:
        return [not_run("text classifiers", "text_classifier")]
    best, scores = best_text(metrics)
    return [Table(["text set", "head", "C", "test accuracy", "macro-F1", "weighted-F1", "ARI",
                   "CV macro-F1 (train+val)", "fit time"],
                  [[k, m.get("head", "?"), m.get("C", ""), f3(m.get("test_accuracy")), f3(m.get("macro_f1")),
                    f3(m.get("weighted_f1")), f3(m.get("ari")),
                    f"{f3(m.get('cv_macro_f1'))} ± {f3(m.get('cv_macro_f1_std'))}",
                    secs(seconds(timings.get(f"text_classifier/{k}"), "seconds", "fit_seconds"))]
                   for k, m in sorted(text.items(), key=lambda kv: -kv[1].get("macro_f1", 0))]),
            Para(f"Best: **{best}**, macro-F1 {f3(scores.get('macro_f1'))} (target "
                 f"{ref.TARGET_TEXT_CLASSIFIER_MACRO_F1:.2f}: "
                 f"{status(scores.get('macro_f1'), ref.TARGET_TEXT_CLASSIFIER_MACRO_F1)})."),
            fig(f"plots/text_classifier/{best}/confusion.png", f"text classifier ({best}): confusion matrix"),
            fig(f"plots/text_classifier/{best}/per_class_f1.png", f"text classifier ({best}): per-class F1")]


def _transfer(metrics: dict, train: pd.DataFrame, fig: Figures) -> list[Block]:
    if train.empty:
        return [not_run("transfer learning", "train")]
    out: list[Block] = [Para("Frozen ImageNet backbone + dense head (Dense(1024, ReLU) → Dropout → softmax), early "
                             "stopping on validation; `augmented` adds flipped / rotated / zoomed / brightness-shifted "
                             "training views. As in the seed study's section 8.4: accuracy, training time, "
                             "parameters.")]
    rows, marks = [], []
    for r in train.sort_values(["backbone", "variant"], ascending=[False, False]).to_dict("records"):
        seed = ("" if missing(r["seed_accuracy"]) else
                f"{r['seed_accuracy']:.3f} / {secs(r['seed_fit_seconds'])} / {count(r['seed_params'])}")
        rows.append([r["model"], weights_label(r["weights"]), r["framework"] or "", f3(r["test_accuracy"]),
                     f3(r["macro_f1"]), f3(r["ari"]), secs(r["fit_seconds"]), secs(r["seconds_per_epoch"]),
                     f"{count(r['epochs_run'])} ({count(r['best_epoch'])})", count(r["backbone_params"]),
                     count(r["head_params"]), seed])
        marks.append(RANDOM_INIT if r["weights"] == RANDOM_INIT else "")
    out.append(Table(["model", "weights", "framework", "test accuracy", "macro-F1", "ARI", "fit time", "per epoch",
                      "epochs (best)", "backbone params", "head params",
                      "seed study accuracy / time / params"], rows, marks))
    if RANDOM_INIT in marks:
        out.append(warn_random_init([r[0] for r, k in zip(rows, marks) if k]))
    out.append(fig("plots/report/backbones.png", "test accuracy per backbone and variant"))
    aug = augmentation_effect(train)
    if aug:
        out.append(Para("Augmentation (augmented − base test accuracy, real weights): " + ", ".join(
            f"{b} {d:+.3f}" for b, d in aug.items()) + "."))
    best = best_trained(train)
    if best is not None:
        k = best["model"]
        out += [Para(f"Best model with real weights: **{k}**, test accuracy {best['test_accuracy']:.3f}, "
                     f"macro-F1 {f3(best['macro_f1'])}."),
                _per_class_table(metrics, k),
                fig(f"plots/train/{k}/history.png", f"{k}: loss and accuracy per epoch"),
                fig(f"plots/train/{k}/confusion.png", f"{k}: confusion matrix (test)"),
                fig(f"plots/train/{k}/per_class_f1.png", f"{k}: per-class F1 (test)"),
                fig(f"plots/train/{k}/predictions.png", f"{k}: correct and incorrect test predictions")]
    return out


def _per_class_table(metrics: dict, model: str) -> Table:
    """Per-class scores of `model` next to the seed study's, the best text classifier's and the fusion's F1."""
    pc = metrics.get(f"train/{model}", {}).get("per_class", {})
    _, text = best_text(metrics)
    tpc = (text or {}).get("per_class", {})
    fu = metrics.get("fusion") or {}
    fmode = selected_fusion(fu)
    fpc = fu.get("fusion_per_class", {})
    rows = [[c, f3(v.get("precision")), f3(v.get("recall")), f3(v.get("f1")), v.get("support", ""),
             f3(ref.SEED_PER_CLASS_F1.get(c)), f3(tpc.get(c, {}).get("f1")), f3(fpc.get(class_key(c), {}).get("f1"))]
            for c, v in sorted(pc.items())]
    return Table(["category", "precision", "recall", "F1", "support", "seed study F1 (VGG16)", "best text F1",
                  f"fusion F1 ({fmode or 'not run'})"], rows, caption=f"Per class, test split: {model}")


def _gradcam(metrics: dict, fig: Figures) -> list[Block]:
    gc = metrics.get("gradcam")
    if not gc:
        return [not_run("Grad-CAM", "gradcam")]
    return [Para(f"Grad-CAM on **{gc.get('model', '?')}** (layer `{gc.get('layer', '?')}`): "
                 f"{gc.get('n_correct', '?')} correctly and {gc.get('n_incorrect', '?')} wrongly classified test "
                 f"images ({gc.get('selection', 'selection not recorded')})."),
            fig("plots/gradcam/correct.png", "Grad-CAM: correct predictions"),
            fig("plots/gradcam/incorrect.png", "Grad-CAM: incorrect predictions")]


def _zero_shot(metrics: dict) -> list[Block]:
    zs = metrics.get("zero_shot")
    if not zs:
        return [not_run("zero-shot classification", "zero_shot")]
    if zs.get("available"):
        return [Para(f"CLIP {zs.get('arch', '?')} ({zs.get('tag', '?')}, weights {zs.get('weights', '?')}), prompt "
                     f"“{zs.get('prompt_template', '?')}”, no training: test accuracy {f3(zs.get('accuracy'))}, "
                     f"macro-F1 {f3(zs.get('macro_f1'))}, ARI {f3(zs.get('ari'))} on {zs.get('n_test', '?')} "
                     "products.")]
    return [Para(f"Unavailable: {zs.get('reason', 'no reason recorded')} (weights: {zs.get('weights', '?')}).",
                 "warn" if zs.get("weights") == RANDOM_INIT else "note")]


def multiseed(metrics: dict, fig: Figures) -> list[Block]:
    ms = group(metrics, "multiseed/")
    if not ms:
        return [not_run("multi-seed training", "multiseed")]
    out: list[Block] = [Para("The same head trained on cached backbone features with different seeds: mean ± std and "
                             "a 95 % interval over seeds, so a difference between models can be told from seed "
                             "noise.")]
    rows, marks = [], []
    for b, m in ms.items():
        rows.append([b, weights_label(m.get("weights")), m.get("head", "?"), m.get("n_seeds", "?"),
                     plus_minus(m, "test_accuracy"),
                     f"{f3(m.get('test_accuracy_ci95_low'))}–{f3(m.get('test_accuracy_ci95_high'))}",
                     plus_minus(m, "macro_f1"), f"{f3(m.get('macro_f1_ci95_low'))}–{f3(m.get('macro_f1_ci95_high'))}",
                     f3(m.get("val_accuracy"))])
        marks.append(RANDOM_INIT if m.get("weights") == RANDOM_INIT else "")
    s = ref.SEED_MULTISEED
    rows.append([f"{s['backbone']} (seed study)", "imagenet", "", "", f"{s['test_accuracy']:.3f} ± "
                 f"{s['test_accuracy_std']:.3f}", "", "", "", ""])
    marks.append("")
    out.append(Table(["backbone", "weights", "head", "seeds", "test accuracy", "95 % interval", "macro-F1",
                      "95 % interval", "val accuracy"], rows, marks))
    m = ms.get(s["backbone"])
    if m and not missing(m.get("test_accuracy_ci95_low")):
        inside = m["test_accuracy_ci95_low"] <= s["test_accuracy"] <= m["test_accuracy_ci95_high"]
        out.append(Para(f"{s['backbone']}: {m['test_accuracy']:.3f} vs the seed study's {s['test_accuracy']:.3f}; the "
                        f"seed study's mean is {'inside' if inside else 'outside'} this study's 95 % interval."))
    for b in ms:
        out += [fig(f"plots/multiseed/{b}/learning_curves.png", f"{b}: learning curves, one line per seed"),
                fig(f"plots/multiseed/{b}/per_class_f1.png", f"{b}: per-class F1 over seeds")]
    return out


def fusion(metrics: dict, fig: Figures) -> list[Block]:
    fu = metrics.get("fusion")
    if not fu:
        return [not_run("text + image fusion", "fusion")]
    cv = fu.get("cv", {})

    def row(name, key):
        c = cv.get(key, {})
        return [name, f3(fu.get(f"{key}_test_accuracy")), f3(fu.get(f"{key}_macro_f1")), f3(fu.get(f"{key}_ari")),
                f"{f3(c.get('cv_accuracy'))} ± {f3(c.get('cv_accuracy_std'))}" if c else "n/a",
                "" if key in ("text", "image") else f"{fu.get(f'{key}_minus_best_single', float('nan')):+.3f}"]

    best = selected_fusion(fu)
    rows = [row(f"text only ({fu.get('text_set', '?')})", "text"),
            row(f"image only ({fu.get('image_set', '?')}, {fu.get('image_weights', '?')})", "image")]
    rows += [row(f"fusion candidate: {m}", m) for m in fusion_modes(fu)]
    if best:
        rows.append(row(f"**selected fusion: {best}** (by {fu.get('select_by', '?')} on train+val)", "fusion"))
    s = ref.SEED_FUSION
    rows += [["seed study: image only (VGG16)", f"{s['image_test_accuracy']:.3f}", "", "", "", ""],
             ["seed study: fusion (USE + VGG16)", f"{s['fusion_test_accuracy']:.3f}", f"{s['fusion_macro_f1']:.3f}",
              "", "", ""]]
    out: list[Block] = [
        Para(f"{fu.get('head', '?')} heads on {fu.get('text_set', '?')} text and {fu.get('image_set', '?')} image "
             f"features, fitted on train ids only ({fu.get('n_train', '?')} train / {fu.get('n_val', '?')} val / "
             f"{fu.get('n_test', '?')} test); no fit sees a test id. The seed study scored its fusion on an 80/20 "
             "split of the 210 test products (42 products)."),
        Table(["model", "test accuracy", "macro-F1", "ARI", "CV accuracy (train+val)", "vs best single modality"],
              rows)]
    if best:
        acc = fu["fusion_test_accuracy"]
        out += [Para(f"Selected fusion (chosen on train+val, never on test): **{best}**, test accuracy {acc:.3f} "
                     f"({fu.get('fusion_minus_best_single', float('nan')):+.3f} vs the best single modality); target "
                     f"{ref.TARGET_FUSION_TEST_ACCURACY:.2f}: {status(acc, ref.TARGET_FUSION_TEST_ACCURACY)}."),
                fig("plots/fusion/fusion_confusion.png", f"fusion ({best}): confusion matrix")]
    out.append(fig("plots/fusion/per_class_f1.png", "per-class F1: text, image, fusion"))
    return out


def conclusion(said: dict[str, str], metrics: dict, table: pd.DataFrame) -> list[Block]:
    """`said`: findings.findings(...), one paragraph each, then the targets table."""
    return ([Para(text) for text in said.values()]
            + [Heading("Targets", 3),
               Table(["target", "measured", "threshold", "status"],
                     [[t["what"], f3(t["value"]), f"≥ {t['threshold']:.2f}", status(t["value"], t["threshold"])]
                      for t in targets(metrics, table)])])
