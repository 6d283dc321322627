"""The report's supervised sections as document blocks: supervised classification (text classifiers, transfer
learning, Grad-CAM, zero-shot CLIP), multi-seed stability, text + image fusion (with its calibration and the
McNemar test against the best single modality). Test metrics of the best models carry their bootstrap
interval (evidence.Evidence) when their per-product predictions are available.

Each section function returns its body; study.build puts the section heading in front.
"""
from __future__ import annotations

import pandas as pd

from ..evaluate.metrics import class_key  # the key metrics/fusion.json uses per class
from . import fine_tuned
from . import reference as ref
from .document import Block, Heading, Para, Table
from .evidence import Evidence
from .findings import (
    augmentation_effect,
    best_text,
    best_trained,
    fusion_modes,
    group,
    selected_fusion,
)
from .formatting import RANDOM_INIT, count, f3, missing, pct, plus_minus, status
from .sections import Figures, cost_note, not_run, warn_random_init
from .summary import weights_label


def _intervals(ev: Evidence, model: str) -> str:
    """The bootstrap intervals of a model's test accuracy and macro-F1 as " (95 % bootstrap intervals …)", or
    "" without reproducible predictions."""
    parts = [f"{name} {iv.low:.3f}–{iv.high:.3f}"
             for stat, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")) if (iv := ev.interval(model, stat))]
    return f" (95 % bootstrap intervals over {ev.interval(model).n} test products: {', '.join(parts)})" if parts else ""


def supervised(metrics: dict, train: pd.DataFrame, fig: Figures, ev: Evidence) -> list[Block]:
    return ([Para("Every model is fitted on the train split, selected on validation, and scored once on the "
                  "held-out test split."),
             Heading("7.1 Text classifiers", 3)] + _text_classifiers(metrics, fig, ev)
            + [Heading("7.2 Transfer learning: backbone comparison", 3)] + _transfer(metrics, train, fig, ev)
            + [Heading("7.3 Grad-CAM: where the model looks", 3)] + _gradcam(metrics, fig)
            + [Heading("7.4 Zero-shot CLIP", 3)] + _zero_shot(metrics)
            + [Heading("7.5 A text encoder fine-tuned end to end", 3)] + fine_tuned.blocks(metrics, fig))


def _text_classifiers(metrics: dict, fig: Figures, ev: Evidence) -> list[Block]:
    text = group(metrics, "text_classifier/")
    if not text:
        return [not_run("text classifiers", "text_classifier")]
    best, scores = best_text(metrics)
    by_target = sorted({t for m in text.values() for t in m.get("cv_accuracy_by_target", {})})
    return [Para("Each head is fitted on the top-level category and on the category tree's second level (59 "
                 "sub-categories, their probabilities summed per top category); the target with the better CV "
                 "accuracy on train+val is kept, and only it predicts the test split."
                 if len(by_target) > 1 else "Each head is fitted on the top-level category."),
            Table(["text set", "head", "C", "target", *[f"CV accuracy: {t}" for t in by_target], "test accuracy",
                   "macro-F1", "weighted-F1", "ARI", "CV macro-F1 (train+val)"],
                  [[k, m.get("head", "?"), m.get("C", ""), m.get("target", "category"),
                    *[f3(m.get("cv_accuracy_by_target", {}).get(t)) for t in by_target],
                    f3(m.get("test_accuracy")), f3(m.get("macro_f1")),
                    f3(m.get("weighted_f1")), f3(m.get("ari")),
                    f"{f3(m.get('cv_macro_f1'))} ± {f3(m.get('cv_macro_f1_std'))}"]
                   for k, m in sorted(text.items(), key=lambda kv: -kv[1].get("macro_f1", 0))]),
            cost_note("Fit time per text classifier"),
            Para(f"Best: **{best}**, test accuracy {f3(scores.get('test_accuracy'))}, macro-F1 "
                 f"{f3(scores.get('macro_f1'))}{_intervals(ev, 'text')} (target "
                 f"{ref.TARGET_TEXT_CLASSIFIER_MACRO_F1:.2f}: "
                 f"{status(scores.get('macro_f1'), ref.TARGET_TEXT_CLASSIFIER_MACRO_F1)})."),
            fig(f"plots/text_classifier/{best}/confusion.png", f"text classifier ({best}): confusion matrix"),
            fig(f"plots/text_classifier/{best}/per_class_f1.png", f"text classifier ({best}): per-class F1")]


def _transfer(metrics: dict, train: pd.DataFrame, fig: Figures, ev: Evidence) -> list[Block]:
    if train.empty:
        return [not_run("transfer learning", "train")]
    out: list[Block] = [Para("Frozen ImageNet backbone + dense head (Dense(1024, ReLU) → Dropout → softmax), early "
                             "stopping on validation; `augmented` adds flipped / rotated / zoomed / brightness-shifted "
                             "training views. As in the seed study's section 8.4: accuracy and parameters."),
                        cost_note("Training time per backbone (and the seed study's, for comparison)")]
    rows, marks = [], []
    for r in train.sort_values(["backbone", "variant"], ascending=[False, False]).to_dict("records"):
        seed = ("" if missing(r["seed_accuracy"]) else
                f"{r['seed_accuracy']:.3f} / {count(r['seed_params'])}")
        rows.append([r["model"], weights_label(r["weights"]), r["framework"] or "", f3(r["test_accuracy"]),
                     f3(r["macro_f1"]), f3(r["ari"]),
                     f"{count(r['epochs_run'])} ({count(r['best_epoch'])})", count(r["backbone_params"]),
                     count(r["head_params"]), seed])
        marks.append(RANDOM_INIT if r["weights"] == RANDOM_INIT else "")
    out.append(Table(["model", "weights", "framework", "test accuracy", "macro-F1", "ARI", "epochs (best)",
                      "backbone params", "head params", "seed study accuracy / params"], rows, marks))
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
                     f"macro-F1 {f3(best['macro_f1'])}{_intervals(ev, 'image')}."),
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


def fusion(metrics: dict, fig: Figures, ev: Evidence) -> list[Block]:
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
        out += [Para(f"Selected fusion (chosen on train+val, never on test): **{best}**, test accuracy {acc:.3f}"
                     f"{_intervals(ev, 'fusion')} ({fu.get('fusion_minus_best_single', float('nan')):+.3f} vs the "
                     f"best single modality); target {ref.TARGET_FUSION_TEST_ACCURACY:.2f}: "
                     f"{status(acc, ref.TARGET_FUSION_TEST_ACCURACY)}."),
                fig("plots/fusion/fusion_confusion.png", f"fusion ({best}): confusion matrix")]
    out.append(fig("plots/fusion/per_class_f1.png", "per-class F1: text, image, fusion"))
    return (out + [Heading("9.1 Calibration: when to answer automatically", 3)] + calibration(fu, fig)
            + [Heading("9.2 Fusion vs the best single modality", 3), mcnemar(fu)])


def calibration(fu: dict, fig: Figures) -> list[Block]:
    """Temperature, ECE before / after, the answer threshold and accuracy at fixed coverages, for the selected
    model and the text head alone (what a product without a photo gets); metrics/fusion.json `calibration`."""
    cal = fu.get("calibration") or {}
    if not cal.get("selected"):
        return [Para("Not run: calibration (metrics/fusion.json has no `calibration`; re-run stage `fusion`).",
                     "note")]
    roles = {"selected": f"selected fusion ({fu.get('fusion_selected', '?')})",
             "text": f"text head alone ({fu.get('text_set', '?')}; a product without photo)"}
    rows = [[label, f3(c.get("temperature"), 2), f"{f3(c.get('test_ece_uncalibrated'))} → {f3(c.get('test_ece'))}",
             f3(c.get("threshold")), pct(c.get("oof_coverage_at_threshold")), pct(c.get("test_coverage_at_threshold")),
             pct(c.get("test_accuracy_at_threshold")),
             *(pct(c.get(f"test_accuracy_at_{k}")) for k in (80, 90, 100))]
            for role, label in roles.items() if (c := cal.get(role))]
    sel = cal["selected"]
    target = ref.TARGET["calibration_ece"]
    return [Para("Temperature scaling fitted on out-of-fold train+val probabilities; the answer threshold is the "
                 f"lowest top probability whose out-of-fold answers reach {pct(sel.get('target_accuracy'), 0)} "
                 "accuracy; test is only scored with both. ECE: expected calibration error (lower is better)."),
            Table(["model", "temperature", "test ECE before → after", "threshold", "coverage out of fold",
                   "test coverage at threshold", "test accuracy at threshold", "accuracy at 80 % coverage",
                   "at 90 %", "at 100 %"], rows),
            Para(f"Selected model: answering when the top probability is ≥ {f3(sel.get('threshold'))} covers "
                 f"{pct(sel.get('test_coverage_at_threshold'))} of the test products at "
                 f"{pct(sel.get('test_accuracy_at_threshold'))} accuracy; test ECE {f3(sel.get('test_ece'))} (target "
                 f"≤ {target.target:.2f}: {status(sel.get('test_ece'), target.target, target.lower_is_better)})."),
            fig("plots/fusion/calibration.png", "calibration of the selected fusion (test): reliability before / "
                "after temperature scaling, accuracy against coverage")]


def mcnemar(fu: dict) -> Para:
    """The McNemar line: selected fusion vs the single modality chosen by CV, on the same test products."""
    pv = fu.get("fusion_vs_best_single") or {}
    if "p_value" not in pv:
        return Para("Not run: McNemar test (metrics/fusion.json has no `fusion_vs_best_single`; re-run stage "
                    "`fusion`).", "note")
    sel, single, p = fu.get("fusion_selected", "?"), pv.get("single", "?"), pv["p_value"]
    if sel == single:
        return Para(f"The selected model is {single} alone: nothing to compare (McNemar p = {f3(p)}).")
    return Para(f"Fusion ({sel}) vs {single} alone (the single modality chosen by {fu.get('select_by', '?')}), "
                f"McNemar's exact test on the same test products: only fusion right {pv.get('only_a_right', '?')} / "
                f"only {single} right {pv.get('only_b_right', '?')}, p = {f3(p)}, so the difference is "
                f"{'' if p < 0.05 else 'not '}significant at 5 %.")
