"""Text + image late fusion, chosen by protocol: every candidate (each modality alone, concat, and
average / geometric probability pooling at each text weight) is scored on validation and by repeated
stratified CV over train+val; one is selected by `select_by` and only then is the test split predicted.

Because the single modalities are candidates themselves (text weight 1 and 0), the selected model
is never worse than the best single modality *on the selection criterion*; on test it can still
land below by chance (that is reported, not hidden).

Leak-free by construction: `fit_fusion` takes the train and val rows out of the feature files and
never holds a test row, so no fit, no CV fold and no choice can see one (LeakError guards on top).
`evaluate_fusion` predicts the test rows once with the fitted heads.

Pure functions (no file or MLflow I/O). Every fit goes through `heads.fit_head` (tests spy on it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..data.splits import assert_no_test, common_ids
from ..evaluate.metrics import class_key, scores
from ..files import align
from . import heads
from .recipes import fixed

PROBA_RULES = ("average_proba", "geometric_proba")
MODES = ("concat",) + PROBA_RULES
SELECT_BY = ("cv", "val")
SINGLE = ("text", "image")


# ------------------------------------------------------------------------------------ combining
def combine_proba(p_text, p_image, text_weight: float, rule: str) -> np.ndarray:
    """Pool two [n, k] probability matrices (same class order).

    average_proba:   w * P_text + (1 - w) * P_image
    geometric_proba: P_text^w * P_image^(1-w), renormalised (log-linear pooling: a confident modality
                     can veto a class the other one only half-believes)
    w = 1 gives the text head, w = 0 the image head.
    """
    pt, pi = np.asarray(p_text, dtype=np.float64), np.asarray(p_image, dtype=np.float64)
    if pt.shape != pi.shape:
        raise ValueError(f"text probabilities {pt.shape} and image probabilities {pi.shape} differ in shape")
    w = float(text_weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"text weight must be in [0, 1], got {w}")
    if rule == "average_proba":
        return w * pt + (1.0 - w) * pi
    if rule == "geometric_proba":
        z = w * np.log(np.clip(pt, 1e-12, 1.0)) + (1.0 - w) * np.log(np.clip(pi, 1e-12, 1.0))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"pooling rule must be one of {PROBA_RULES}, got {rule!r}")


def candidates(modes, weights) -> list[dict]:
    """text, image, then per mode: concat, or `<rule>@<w>` for every weight strictly inside (0, 1)."""
    out = [{"name": "text", "mode": "text", "text_weight": 1.0},
           {"name": "image", "mode": "image", "text_weight": 0.0}]
    for mode in modes:
        if mode == "concat":
            out.append({"name": "concat", "mode": "concat", "text_weight": None})
        elif mode in PROBA_RULES:
            out += [{"name": f"{mode}@{w:g}", "mode": mode, "text_weight": float(w)}
                    for w in sorted(set(float(w) for w in weights)) if 0.0 < w < 1.0]
        else:
            raise ValueError(f"fusion mode must be one of {MODES}, got {mode!r}")
    return out


def heads_needed(candidate: dict) -> tuple[str, ...]:
    mode = candidate["mode"]
    return (mode,) if mode in SINGLE + ("concat",) else SINGLE


def concat_features(T, I) -> np.ndarray:
    return np.hstack([np.asarray(T, dtype=np.float64), np.asarray(I, dtype=np.float64)])


def head_probas(models: dict, T, I, names=None) -> dict:
    """{head name: P [n, k]} for the fitted sklearn pipelines `models` (text / image / concat)."""
    out, classes = {}, None
    for name in names or models:
        X = T if name == "text" else I if name == "image" else concat_features(T, I)
        m = models[name]
        out[name] = m.predict_proba(np.asarray(X, dtype=np.float64))
        if classes is not None and list(m.classes_) != classes:
            raise ValueError(f"fusion head {name!r} has classes {list(m.classes_)}, the others {classes}")
        classes = list(m.classes_)
    return out


def candidate_proba(candidate: dict, probas: dict) -> np.ndarray:
    mode = candidate["mode"]
    if mode in probas:
        return probas[mode]
    return combine_proba(probas["text"], probas["image"], candidate["text_weight"], mode)


def fusion_proba(models: dict, candidate: dict, T, I) -> np.ndarray:
    """Class probabilities of one candidate (the deployed model uses the selected one)."""
    return candidate_proba(candidate, head_probas(models, T, I, heads_needed(candidate)))


# ------------------------------------------------------------------------------------ concat head
def fit_concat(T_train, I_train, y_train, T_val, I_val, y_val, cfg: heads.HeadParams, seed: int) -> heads.Fitted:
    """One head on [text | image]: each block standardised with train statistics and divided by
    sqrt(its width), so a 1280-d block does not drown a 384-d one; the pipeline takes the raw
    concatenation (`concat_features`)."""
    dt, di = np.shape(T_train)[1], np.shape(I_train)[1]
    blocks = ColumnTransformer(
        [("text", StandardScaler(), list(range(dt))), ("image", StandardScaler(), list(range(dt, dt + di)))],
        transformer_weights={"text": 1.0 / np.sqrt(dt), "image": 1.0 / np.sqrt(di)})
    Z_train = blocks.fit_transform(concat_features(T_train, I_train))
    Z_val = blocks.transform(concat_features(T_val, I_val))
    f = heads.fit_head(Z_train, y_train, Z_val, y_val, cfg.model_copy(update={"scale": "none"}), seed)
    return heads.Fitted(Pipeline([("blocks", blocks), *f.model.steps]), f.curve, f.chosen)


# ------------------------------------------------------------------------------------ protocol
@dataclass
class FusionFit:
    heads: dict                # "text" / "image" / "concat" -> heads.Fitted (fit on train, chosen on val)
    candidates: pd.DataFrame   # one row per candidate: name, mode, text_weight, val_*, cv_*
    selected: dict             # the chosen candidate: name, mode, text_weight
    folds: pd.DataFrame        # CV on train+val: fold, model (candidate name), accuracy, macro_f1, log_loss
    classes: list
    select_by: str
    ids_train: np.ndarray
    ids_val: np.ndarray
    oof: dict | None = None    # candidate name -> out-of-fold probabilities of train+val (first CV repeat)
    y: np.ndarray | None = None  # the train+val labels, in `oof`'s row order

    @property
    def models(self) -> dict:
        return {k: f.model for k, f in self.heads.items()}


def fold_scores(y, proba, classes) -> dict:
    """Accuracy, macro-F1 and log loss of probabilities `proba` (columns in `classes` order): one CV fold's row."""
    s = scores(y, proba, classes, classes, per_class=False)
    return {k: s[k] for k in ("accuracy", "macro_f1", "log_loss")}


def _fit_heads(T_a, I_a, y_a, T_b, I_b, y_b, cfgs: dict, seed: int) -> dict:
    out = {}
    for name, cfg in cfgs.items():
        if name == "concat":
            out[name] = fit_concat(T_a, I_a, y_a, T_b, I_b, y_b, cfg, seed)
        else:
            A, B = (T_a, T_b) if name == "text" else (I_a, I_b)
            out[name] = heads.fit_head(A, y_a, B, y_b, cfg, seed)
    return out


def fit_fusion(text_X, text_ids, image_X, image_ids, catalog: pd.DataFrame, cfg: heads.HeadParams, seed: int, *,
               modes=("concat", "average_proba", "geometric_proba"),
               weights=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
               n_splits: int = 5, n_repeats: int = 2, select_by: str = "cv") -> FusionFit:
    """Fit the heads on train (val picks C / stops the MLP), score every candidate on val and by
    repeated stratified K-fold CV over train+val (the val-chosen hyper-parameters refitted per fold),
    and select one: highest `select_by` accuracy, ties -> lower log loss, then the earlier candidate
    (single modalities first). Only ids present in both files and in the train/val splits are used.
    """
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {SELECT_BY}, got {select_by!r}")
    if select_by == "cv" and n_repeats < 1:
        raise ValueError("select_by='cv' needs n_repeats >= 1")
    cands = candidates(modes, weights)
    ids = common_ids(catalog, text_ids, image_ids)
    split = catalog.set_index("id").loc[ids, "split"].to_numpy()
    ids = ids[np.isin(split, ("train", "val"))]          # from here on, no test row exists in this function
    assert_no_test(ids, catalog, ("train", "val"))
    cat = catalog.set_index("id").loc[ids]
    T, I = align(text_X, text_ids, ids).astype(np.float64), align(image_X, image_ids, ids).astype(np.float64)
    y, split = cat["category"].to_numpy(), cat["split"].to_numpy()
    tr, va = split == "train", split == "val"
    assert_no_test(ids[tr], catalog, ("train",))
    assert_no_test(ids[va], catalog, ("val",))
    classes = sorted(catalog["category"].unique())

    names = ["text", "image"] + (["concat"] if any(c["mode"] == "concat" for c in cands) else [])
    fitted = _fit_heads(T[tr], I[tr], y[tr], T[va], I[va], y[va], {n: cfg for n in names}, seed)
    val_p = head_probas({k: f.model for k, f in fitted.items()}, T[va], I[va])
    model_classes = list(fitted["text"].model.classes_)
    rows = []
    for c in cands:
        s = fold_scores(y[va], candidate_proba(c, val_p), model_classes)
        rows.append({**c, "val_accuracy": s["accuracy"], "val_macro_f1": s["macro_f1"], "val_log_loss": s["log_loss"]})
    table = pd.DataFrame(rows)

    folds, oof = _cv(T, I, y, fitted, cfg, cands, seed, n_splits, n_repeats, model_classes) if n_repeats > 0 else \
        (pd.DataFrame(columns=["fold", "model", "accuracy", "macro_f1", "log_loss"]), None)
    if len(folds):
        g = folds.groupby("model", sort=False)
        cv = pd.DataFrame({"cv_accuracy": g["accuracy"].mean(), "cv_accuracy_std": g["accuracy"].std(ddof=1),
                           "cv_macro_f1": g["macro_f1"].mean(), "cv_log_loss": g["log_loss"].mean()})
        table = table.join(cv, on="name")
    selected = select(table, select_by)
    return FusionFit(fitted, table, selected, folds, classes, select_by, ids[tr], ids[va], oof, y)


def _cv(T, I, y, fitted: dict, cfg: heads.HeadParams, cands: list, seed: int, n_splits: int, n_repeats: int,
        model_classes) -> tuple[pd.DataFrame, dict]:
    """Per-fold scores of every candidate, and each candidate's out-of-fold probabilities of the first repeat
    (every train+val row scored once by a model that did not see it: what calibration is fitted on)."""
    cfgs = {name: fixed(cfg, f) for name, f in fitted.items()}
    rskf = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    rows, oof = [], {c["name"]: np.zeros((len(y), len(model_classes))) for c in cands}
    for fold, (a, b) in enumerate(rskf.split(T, y)):
        fold_heads = _fit_heads(T[a], I[a], y[a], T[b], I[b], y[b], cfgs, seed)
        probas = head_probas({k: f.model for k, f in fold_heads.items()}, T[b], I[b])
        for c in cands:
            p = candidate_proba(c, probas)
            if fold < n_splits:
                oof[c["name"]][b] = p
            rows.append({"fold": fold, "model": c["name"], **fold_scores(y[b], p, model_classes)})
    return pd.DataFrame(rows), oof


def select(table: pd.DataFrame, select_by: str, mode: str | None = None) -> dict:
    """The best candidate (of one `mode` when given) on `select_by`: accuracy, then log loss, then order."""
    acc, loss = f"{select_by}_accuracy", f"{select_by}_log_loss"
    t = table if mode is None else table[table["mode"] == mode]
    if t.empty:
        raise ValueError(f"no fusion candidate of mode {mode!r}")
    key = pd.DataFrame({"acc": t[acc].round(10), "loss": t[loss].round(10)}, index=t.index)
    best = key.sort_values(["acc", "loss"], ascending=[False, True], kind="stable").index[0]
    row = t.loc[best]
    w = row["text_weight"]
    return {"name": row["name"], "mode": row["mode"], "text_weight": None if pd.isna(w) else float(w)}


def evaluate_fusion(fit: FusionFit, text_X, text_ids, image_X, image_ids, catalog: pd.DataFrame) -> dict:
    """Test rows (present in both files) predicted once by each fitted head; every candidate scored.

    Returns ids_test, y_test, `test` {candidate name: evaluate.metrics.scores(...)} and `pred`
    {candidate name: predicted labels}.
    """
    ids = common_ids(catalog, text_ids, image_ids)
    ids = ids[catalog.set_index("id").loc[ids, "split"].to_numpy() == "test"]
    y = catalog.set_index("id").loc[ids, "category"].to_numpy()
    probas = head_probas(fit.models, align(text_X, text_ids, ids), align(image_X, image_ids, ids))
    model_classes = np.asarray(fit.heads["text"].model.classes_)
    test, pred, proba = {}, {}, {}
    for c in fit.candidates[["name", "mode", "text_weight"]].to_dict("records"):
        p = proba[c["name"]] = candidate_proba(c, probas)
        test[c["name"]] = scores(y, p, model_classes, fit.classes)
        pred[c["name"]] = model_classes[p.argmax(1)]
    return {"ids_test": ids, "y_test": y, "test": test, "pred": pred, "proba": proba}


def calibrate(fit: FusionFit, ev: dict, target_accuracy: float, bins: int, name: tuple | None = None
              ) -> tuple[dict, dict]:
    """Temperature scaling + answer threshold of the selected model, of the text head alone (what a
    product without a photo gets) and of the name head (`name`: (name_head.NameFit, name_head.evaluate), what a
    product given by its name alone gets), each fitted on its out-of-fold train+val probabilities, scored on test.
    Returns ({"selected"|"text"|"name": metrics}, {"selected"|"text"|"name": tables})."""
    from ..evaluate.calibration import calibrate as calibrate_proba

    model_classes = list(fit.heads["text"].model.classes_)

    def index(labels):
        return np.array([model_classes.index(c) for c in labels])

    runs = {role: (fit.oof[cand], fit.y, ev["proba"][cand], ev["y_test"])
            for role, cand in (("selected", fit.selected["name"]), ("text", "text"))}
    if name is not None:
        nf, nev = name
        runs["name"] = (nf.oof, nf.y, nev["proba"], nev["y_test"])
    metrics, tables = {}, {}
    for role, (oof, oof_labels, test_p, test_labels) in runs.items():
        metrics[role], tables[role] = calibrate_proba(oof, index(oof_labels), test_p, index(test_labels),
                                                      target_accuracy, bins)
    return metrics, tables


# ------------------------------------------------------------------------------------ reporting
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
            "image": {"set": image_set, **{k: i_meta[k] for k in BUNDLE_IMAGE_KEYS if k in i_meta},
                      "dim": int(image_dim)}}
