"""What the numbers say: the report's statements, targets and "best" picks, computed from the metrics.

Pure functions of the metrics dicts (summary.load_tree) and tables (summary.cluster_table, summary.train_table):
no document blocks here, so the same findings feed the report's sections, its conclusion and metrics/report.json.
Random-init rows never count as a best model or towards a group aim.
"""
from __future__ import annotations

import pandas as pd

from . import reference as ref
from .formatting import RANDOM_INIT, f3, met, missing, plus_minus


def group(metrics: dict, prefix: str) -> dict[str, dict]:
    """The metrics files under one folder, keyed by their name: group(m, "multiseed/") -> {"vgg16": {...}}."""
    return {k[len(prefix):]: m for k, m in sorted(metrics.items()) if k.startswith(prefix)}


def fusion_modes(fu: dict) -> list[str]:
    """The fusion candidates in metrics/fusion.json (each has <mode>_test_accuracy), e.g. concat, average_proba;
    `fusion` itself (the candidate selected on train+val) is not one of them."""
    return [k[: -len("_test_accuracy")] for k in sorted(fu) if k.endswith("_test_accuracy")
            and not k.startswith(("best_single", "text_", "image_", "fusion_"))]


def selected_fusion(fu: dict) -> str | None:
    """The fusion the stage selected without looking at test (its `fusion_*` keys), or None."""
    return fu.get("fusion_selected") if "fusion_test_accuracy" in fu else None


def best_text(metrics: dict) -> tuple[str | None, dict | None]:
    """(set, metrics) of the text classifier with the highest macro-F1, or (None, None)."""
    text = group(metrics, "text_classifier/")
    return max(text.items(), key=lambda kv: kv[1].get("macro_f1", -1)) if text else (None, None)


def best_trained(train: pd.DataFrame):
    """The train_table row of the best transfer-learning model with real weights (test accuracy, then
    macro-F1), or None."""
    real = train[(train["weights"] != RANDOM_INIT) & train["test_accuracy"].notna()]
    return None if real.empty else real.sort_values(["test_accuracy", "macro_f1"]).iloc[-1]


def augmentation_effect(train: pd.DataFrame) -> dict[str, float]:
    """backbone -> augmented minus base test accuracy, for the backbones with both variants and real weights."""
    real = train[train["weights"] != RANDOM_INIT].set_index(["backbone", "variant"])["test_accuracy"]
    return {b: real[(b, "augmented")] - real[(b, "base")] for b in sorted({b for b, _ in real.index})
            if (b, "base") in real.index and (b, "augmented") in real.index}


def _best(candidates: list[tuple]) -> tuple:
    """(value, source) of the highest value among (value, source) pairs that have one, or (None, None)."""
    have = [c for c in candidates if not missing(c[0])]
    return max(have, key=lambda c: c[0]) if have else (None, None)


def _image_only(metrics: dict) -> tuple:
    """The best real-weights image-only test accuracy and what gave it: a transfer-learning run, a multi-seed
    head (mean over seeds) or the fusion stage's image head."""
    cand = [(m.get("test_accuracy"), f"train {k}") for k, m in group(metrics, "train/").items()
            if m.get("weights") != RANDOM_INIT]
    cand += [(m.get("test_accuracy"), f"multiseed {k}, mean of {m.get('n_seeds', '?')} seeds")
             for k, m in group(metrics, "multiseed/").items() if m.get("weights") != RANDOM_INIT]
    fu = metrics.get("fusion") or {}
    if fu.get("image_weights") != RANDOM_INIT:
        cand.append((fu.get("image_test_accuracy"), f"fusion image head ({fu.get('image_set', '?')})"))
    return _best(cand)


def measure(target: ref.Target, metrics: dict, table: pd.DataFrame) -> tuple:
    """(measured value, which set / model gave it) of one reference.TARGETS row; (None, None) when the stage
    that measures it has not written the number. Random-init sets and models never count."""
    real = table[table["weights"] != RANDOM_INIT].set_index("set") if not table.empty else pd.DataFrame()
    if target.measure == "cluster":
        return _best([(real.loc[s, "ari"], s) for s in target.sets if s in real.index])
    if target.measure == "cluster_best":
        return _best([(real.loc[s, "ari"], s) for s in real.index if s.startswith(target.key)])
    if target.measure == "text_classifier":
        return _best([(m.get(target.key), f"text classifier {k}")
                      for k, m in group(metrics, "text_classifier/").items()])
    if target.measure == "image_only":
        return _image_only(metrics)
    fu = metrics.get("fusion") or {}
    if target.measure == "fusion":
        return fu.get(target.key), f"fusion {fu.get('fusion_selected', '?')}"
    if target.measure == "calibration":
        cal = (fu.get("calibration") or {}).get("selected") or {}
        return cal.get(target.key), f"fusion {fu.get('fusion_selected', '?')}, temperature-scaled"
    if target.measure == "register":
        reg = metrics.get("register") or {}
        return reg.get(target.key), f"registered {reg.get('model_name', '?')}, {reg.get('selected', '?')}"
    raise ValueError(f"target {target.id}: unknown measure {target.measure!r}")


def targets(metrics: dict, table: pd.DataFrame) -> list[dict]:
    """Every reference.TARGETS row, in order, with the measured value (None when its stage has not written it),
    which set / model gave it (`source`) and met / not met (`met`: None when not measured; a lower-is-better
    target is met at or below its threshold)."""
    out = []
    for t in ref.TARGETS:
        value, source = measure(t, metrics, table)
        value = None if missing(value) else float(value)
        out.append(dict(id=t.id, what=t.label, how=t.how, measure=t.measure, sets=t.sets, value=value,
                        source=source if value is not None else None, now=t.now, public=t.public,
                        public_note=t.public_note, threshold=t.target, lower_is_better=t.lower_is_better,
                        earlier=t.earlier,
                        met=None if value is None else met(value, t.target, t.lower_is_better)))
    return out


def _unsupervised(table: pd.DataFrame) -> str | None:
    real = table[table["weights"] != RANDOM_INIT] if not table.empty else table
    if real.empty:
        return None
    with_seed = real[real["seed_ari"].notna()]
    beat = with_seed[with_seed["ari"] > with_seed["seed_ari"]]
    best = {m: real[real["modality"] == m].sort_values("ari").iloc[-1] for m in ("text", "image")
            if (real["modality"] == m).any()}
    return ("**Unsupervised.** Products separate into their categories without labels"
            + "".join(f"; best {m} representation {b['set']} ARI {b['ari']:.3f}" for m, b in best.items())
            + f". {len(beat)} of {len(with_seed)} representations with a seed-study number beat the seed study.")


def _supervised(metrics: dict, train: pd.DataFrame) -> str | None:
    sup = []
    k, m = best_text(metrics)
    if m:
        sup.append(f"the best text classifier ({k}) reaches test accuracy {f3(m.get('test_accuracy'))} and macro-F1 "
                   f"{f3(m.get('macro_f1'))}")
    bt = best_trained(train)
    if bt is not None:
        seed = ref.SEED_TRAIN.get(bt["model"], {}).get("test_accuracy")
        sup.append(f"the best image model with real weights ({bt['model']}) {bt['test_accuracy']:.3f}"
                   + (f" (seed study {seed:.3f})" if seed else ""))
    ms = group(metrics, "multiseed/").get(ref.SEED_MULTISEED["backbone"])
    if ms:
        sup.append(f"the {ref.SEED_MULTISEED['backbone']} head over {ms.get('n_seeds', '?')} seeds "
                   f"{plus_minus(ms, 'test_accuracy')} (95 % interval {f3(ms.get('test_accuracy_ci95_low'))}–"
                   f"{f3(ms.get('test_accuracy_ci95_high'))}; seed study {ref.SEED_MULTISEED['test_accuracy']:.3f} ± "
                   f"{ref.SEED_MULTISEED['test_accuracy_std']:.3f})")
    fu = metrics.get("fusion") or {}
    bm = selected_fusion(fu)
    if bm:
        d = fu.get("fusion_minus_best_single")
        sup.append(f"text + image fusion ({bm}) {fu['fusion_test_accuracy']:.3f}, "
                   + ("no gain over" if not missing(d) and abs(d) < 5e-4 else
                      f"{d:+.3f} vs" if not missing(d) else "compared with") + " the best single modality")
    return "**Supervised.** On the held-out test split, " + "; ".join(sup) + "." if sup else None


def _verdict(metrics: dict, table: pd.DataFrame, train: pd.DataFrame) -> str:
    done = [t for t in targets(metrics, table) if t["met"] is not None]
    _, text = best_text(metrics)
    bt = best_trained(train)
    accs = [v for v in ((text or {}).get("test_accuracy"), None if bt is None else bt["test_accuracy"],
                        (metrics.get("fusion") or {}).get("fusion_test_accuracy")) if not missing(v)]
    verdict = "**Verdict.** "
    if accs:
        verdict += (f"Automatic classification is feasible: the best supervised model classifies "
                    f"{max(accs):.1%} of the held-out products correctly. ")
    return verdict + (f"{sum(t['met'] for t in done)} of {len(done)} measured targets are met (see Targets in the "
                      "conclusion).")


def findings(metrics: dict, table: pd.DataFrame, train: pd.DataFrame) -> dict[str, str]:
    """The conclusion's statements, each computed from the numbers: unsupervised, supervised, augmentation,
    zero_shot, random_init, verdict (a key is absent when nothing measured it), in that order."""
    out: dict[str, str] = {}
    said = _unsupervised(table)
    if said:
        out["unsupervised"] = said
    said = _supervised(metrics, train)
    if said:
        out["supervised"] = said
    aug = augmentation_effect(train) if not train.empty else {}
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
    out["verdict"] = _verdict(metrics, table, train)
    return out
