"""What the fusion stage writes about its fit: the flat metrics of metrics/fusion.json (`summary`), the candidate
table, the accuracy-against-text-weight curves, the CV folds shown, and the served bundle's config
(models/fusion/fusion.json, `bundle_config`). Pure functions over a FusionFit and its test evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluate.metrics import class_key
from ..fusion_rules import MODES, PROBA_RULES, SINGLE
from .fusion import FusionFit, select


def summary(fit: FusionFit, ev: dict) -> dict:
    """Flat metrics for metrics/fusion.json: the selected model (`fusion_*`), each modality alone,
    each mode at its own best weight (same criterion), CV per model, per-class scores of the selected."""
    t = fit.candidates.set_index("name")
    has_cv = "cv_accuracy" in t.columns

    def block(prefix: str, name: str) -> dict:
        m, row = ev["test"][name], t.loc[name]
        out = {f"{prefix}_test_accuracy": m["accuracy"], f"{prefix}_macro_f1": m["macro_f1"],
               f"{prefix}_ari": m["ari"], f"{prefix}_log_loss": m["log_loss"],
               f"{prefix}_val_accuracy": float(row["val_accuracy"])}
        return out  # CV figures: once, under "cv"

    def cv(name: str) -> dict:
        row = t.loc[name]
        return {"cv_accuracy": float(row["cv_accuracy"]), "cv_accuracy_std": float(row["cv_accuracy_std"]),
                "cv_macro_f1": float(row["cv_macro_f1"]), "cv_log_loss": float(row["cv_log_loss"]),
                "cv_folds": int((fit.folds["model"] == name).sum())}

    sel = fit.selected
    best_single = max(ev["test"]["text"]["accuracy"], ev["test"]["image"]["accuracy"])
    out = {"select_by": fit.select_by, "fusion_selected": sel["name"], "fusion_mode": sel["mode"],
           "n_train": int(len(fit.ids_train)), "n_val": int(len(fit.ids_val)), "n_test": int(len(ev["ids_test"])),
           "best_single_test_accuracy": best_single}
    if sel["text_weight"] is not None:
        out["fusion_text_weight"] = sel["text_weight"]
    out.update(block("fusion", sel["name"]))
    out["fusion_minus_best_single"] = out["fusion_test_accuracy"] - best_single
    crit = f"{fit.select_by}_accuracy"
    out[f"fusion_{crit}_minus_best_single"] = float(t.loc[sel["name"], crit] - t.loc[list(SINGLE), crit].max())
    for name in SINGLE:
        out.update(block(name, name))
        for k, v in fit.heads[name].chosen.items():
            if k != "val_accuracy":
                out[f"{name}_{k.lower()}"] = v  # text_c, image_c (C chosen on val), or the MLP's best_epoch
    modes = [m for m in MODES if (t["mode"] == m).any()]
    for mode in modes:
        best = select(fit.candidates, fit.select_by, mode)
        out.update(block(mode, best["name"]))
        out[f"{mode}_minus_best_single"] = out[f"{mode}_test_accuracy"] - best_single
        if best["text_weight"] is not None:
            out[f"{mode}_text_weight"] = best["text_weight"]
        if mode == "concat":
            out.update({f"concat_{k.lower()}": v for k, v in fit.heads["concat"].chosen.items() if k != "val_accuracy"})
    if has_cv:
        out["cv"] = {name: cv(name) for name in SINGLE}
        out["cv"].update({mode: cv(select(fit.candidates, fit.select_by, mode)["name"]) for mode in modes})
        out["cv"]["fusion"] = cv(sel["name"])
    out["fusion_per_class"] = {class_key(c): v for c, v in ev["test"][sel["name"]]["per_class"].items()}
    return out


def candidate_table(fit: FusionFit, ev: dict) -> pd.DataFrame:
    """Every candidate with its val, CV and test scores and whether it was selected."""
    t = fit.candidates.copy()
    t["test_accuracy"] = [ev["test"][n]["accuracy"] for n in t["name"]]
    t["test_macro_f1"] = [ev["test"][n]["macro_f1"] for n in t["name"]]
    t["selected"] = t["name"] == fit.selected["name"]
    return t


def weight_curves(table: pd.DataFrame) -> pd.DataFrame:
    """One row per text weight (0 = image alone, 1 = text alone), one column per pooling rule and score
    (`<rule>_<val|cv|test>_accuracy`, empty when the rule is not a candidate): how the mix moves them."""
    scores = ("val_accuracy", "cv_accuracy", "test_accuracy")
    single = table.set_index("mode")
    pooled = table[table["mode"].isin(PROBA_RULES)]
    rows = []
    for w in sorted({0.0, 1.0} | set(pooled["text_weight"].astype(float))):
        row = {"text_weight": w}
        for rule in PROBA_RULES:
            if w in (0.0, 1.0):
                src = single.loc["image" if w == 0.0 else "text"] if (pooled["mode"] == rule).any() else None
            else:
                hit = pooled[(pooled["mode"] == rule) & np.isclose(pooled["text_weight"].astype(float), w)]
                src = hit.iloc[0] if len(hit) else None
            row.update({f"{rule}_{c}": float(src[c]) if src is not None and c in src else np.nan for c in scores})
        rows.append(row)
    return pd.DataFrame(rows)


def shown_folds(fit: FusionFit, modes) -> pd.DataFrame:
    """The CV folds of text alone, image alone, each mode at its own best weight and the selected model
    (plots/fusion/cv_folds.csv), labelled by role."""
    shown = {"text": "text", "image": "image", **{m: select(fit.candidates, fit.select_by, m)["name"] for m in modes},
             "fusion": fit.selected["name"]}
    return pd.concat([fit.folds[fit.folds["model"] == cand].assign(model=label) for label, cand in shown.items()])


BUNDLE_IMAGE_KEYS = ("extractor", "framework", "variant", "normalization", "precision", "image_cache", "input_size",
                     "weights", "source", "sha256")


def bundle_config(fit: FusionFit, metrics: dict, text_set: str, image_set: str, t_meta: dict, i_meta: dict,
                  text_dim: int, image_dim: int, calibration: dict | None = None, name: dict | None = None) -> dict:
    """The content of models/fusion/fusion.json: the selected candidate, its scores, and how the features were made (the
    predictor rebuilds them from raw inputs exactly); `name`: the name head's feature set ({"set", "params"})."""
    return {"classes": fit.classes, "selected": fit.selected, "select_by": fit.select_by, "name": name,
            "scores": {"val_accuracy": metrics.get("fusion_val_accuracy"), "test_accuracy": metrics.get("fusion_test_accuracy"),
                       "cv_accuracy": metrics.get("cv", {}).get("fusion", {}).get("cv_accuracy")},
            "calibration": calibration,
            "text": {"set": text_set, "method": t_meta.get("method"), "params": t_meta.get("params", {}),
                     "source": t_meta.get("source"), "dim": int(text_dim)},
            "image": bundle_image(image_set, i_meta, image_dim)}


def bundle_image(image_set: str, i_meta: dict, image_dim: int) -> dict:
    """How the image features were made, for the predictor to rebuild them: BUNDLE_IMAGE_KEYS of the feature
    file's meta, plus the settings the set's backbone spec declares (what its preprocess reads)."""
    from ..image.registry import IMAGE

    spec = IMAGE.check(image_set, "deep").extra.get("backbone")
    keys = BUNDLE_IMAGE_KEYS + tuple(k for k in (spec.settings if spec else ()) if k not in BUNDLE_IMAGE_KEYS)
    return {"set": image_set, **{k: i_meta[k] for k in keys if k in i_meta}, "dim": int(image_dim)}
