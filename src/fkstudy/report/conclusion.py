"""The conclusion: the answer for a product manager first (which model, how accurate, what it does with a
name only, when to let it answer alone, what it confuses, what the label audit found), then the findings
and the targets table — the same table the report stage writes into README.md between
`<!-- targets:begin -->` and `<!-- targets:end -->`.

Every sentence is computed from metrics/ and the evidence the report read (evidence.Evidence); a step that
has not run is one short line saying so.
"""
from __future__ import annotations

import pandas as pd

from .document import Block, Bullets, Heading, Para, Table
from .evidence import Evidence
from .findings import selected_fusion, targets
from .formatting import f3, missing, pct, status

TARGET_COLUMNS = ["target", "measured (which model)", "now (before this work)", "best public", "target value",
                  "status"]


# ---------------------------------------------------------------- the answer for a product manager

def _model(metrics: dict) -> str:
    fu, reg = metrics["fusion"], metrics.get("register") or {}
    sel, mode, w = selected_fusion(fu), fu.get("fusion_mode"), fu.get("fusion_text_weight")
    chosen = f"chosen by {fu.get('select_by', '?')} accuracy on train+val, never on test"
    if fu.get("target") == "category_l2":
        chosen += (", its heads fitted on the category tree's level 2 and read at the top level (chosen over the top "
                   "level the same way)")
    if mode in ("text", "image"):  # a single modality won the selection
        what = f"the {mode} head alone ({fu.get(f'{mode}_set', '?')}): no fusion beat it, {chosen}"
    else:
        weight = "" if missing(w) else f", text weight {w:g}"
        what = (f"the fusion `{sel}` of the {fu.get('text_set', '?')} text head and the {fu.get('image_set', '?')} "
                f"photo head (mode {mode or '?'}{weight}), {chosen}")
    if not reg.get("model_name"):
        return f"**Use** {what} (not registered yet: stage `register` has not written its metrics)."
    alias = f" (alias `{reg['alias']}`)" if reg.get("alias") else ""
    stale = (f" The registered version serves `{reg['selected']}`, not the fusion stage's current selection: re-run "
             "stage `register`." if reg.get("selected") not in (None, sel) else "")
    return f"**Use** the registered model `{reg['model_name']}`{alias}: {what}.{stale}"


def _accuracy(metrics: dict, ev: Evidence) -> str:
    fu, reg = metrics["fusion"], metrics.get("register") or {}
    iv = ev.interval("fusion")
    spread = (iv.describe(pct=True) if iv else
              f"on {fu.get('n_test', '?')} test products; no per-product predictions to bootstrap an interval from")
    out = f"**Expected accuracy: {pct(fu['fusion_test_accuracy'])}** of products put in the right category ({spread})"
    e2e = reg.get("test_accuracy")
    if not missing(e2e):
        out += f"; end to end through the registered model (raw name, description, photo): {pct(e2e)}"
    return out + "."


def _name_only(metrics: dict) -> str:
    reg = metrics.get("register") or {}
    acc = reg.get("name_only_test_accuracy")
    if missing(acc):
        return "**Name only**: not measured (stage `register` has not written `name_only_test_accuracy`)."
    failed = reg.get("name_only_failed") or 0
    head = (metrics["fusion"].get("name_only") or {}) if metrics.get("fusion") else {}
    how = ""
    if reg.get("name_only_answered_by") == "name" and not missing(head.get("text_head_test_accuracy")):
        level = ("fitted on the category tree's level 2 and read at the top level, chosen over the top level by CV "
                 "on train+val, " if head.get("target") == "category_l2" else "")
        how = (f": the name head answers (a head on name-only embeddings, {level}C picked on val, refitted on "
               f"train+val; the full-text head would give {pct(head['text_head_test_accuracy'])} on them)")
    conf = reg.get("name_only_confident_share")
    if not missing(conf):
        how += (f"; it answers {pct(conf)} of them confidently, right on "
                f"{pct(reg.get('name_only_confident_accuracy'))} of those")
    return (f"**With the name only** (no description, no photo) it is right on {pct(acc)} of the same test products "
            f"(macro-F1 {f3(reg.get('name_only_test_macro_f1'))}){how}"
            + (f"; {failed} products without a usable name get no answer" if failed else "") + ".")


def _confidence(metrics: dict) -> str:
    cal = ((metrics["fusion"].get("calibration") or {}).get("selected")) or {}
    if missing(cal.get("threshold")):
        return "**Confidence rule**: not calibrated (metrics/fusion.json has no `calibration`; re-run stage `fusion`)."
    cov = cal.get("test_coverage_at_threshold")
    rule = (f"**Confidence rule**: answer automatically when the top probability (temperature-scaled, "
            f"T = {f3(cal.get('temperature'), 2)}) is ≥ {f3(cal['threshold'])}: ")
    if missing(cov) or cov == 0:
        out = rule + "no test product reaches it, so every product goes to a human"
    else:
        out = rule + (f"on test that is {pct(cov)} of the products at {pct(cal.get('test_accuracy_at_threshold'))} "
                      f"accuracy; the rest ({pct(1 - cov)}) go to a human")
    out += (f". The threshold was chosen out of fold on train+val to reach {pct(cal.get('target_accuracy'), 0)} "
            "accuracy")
    reg = metrics.get("register") or {}
    if not missing(reg.get("confident_share")):
        out += (f"; end to end, the registered model is confident on {pct(reg['confident_share'])} at "
                f"{pct(reg.get('confident_accuracy'))}")
    return out + "."


def _n(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _confusions(ev: Evidence) -> str:
    if "fusion" not in ev.predictions:
        return "**Most confused categories**: not available (no test predictions of the selected fusion)."
    pairs = ev.confused("fusion")
    if not pairs:
        return "**Most confused categories**: none, every test product is right."
    return "**Most confused categories** (test): " + "; ".join(
        f"{a} ↔ {b}: {_n(ab + ba, 'mistake')} ({_n(ab, a + ' product')} taken for {b}"
        + (f", {ba} the other way)" if ba else ")")
        for a, b, ab, ba in pairs) + "."


def _label_audit(metrics: dict) -> str:
    la = metrics.get("label_audit")
    if not la:
        return "**Label audit**: not run (stage `label_audit` has not written its metrics)."
    official, clean = la.get("fusion_test_accuracy"), la.get("fusion_test_accuracy_unflagged")
    out = (f"**Label audit**: {la.get('n_flagged', '?')} of {la.get('n_products', '?')} catalogue products "
           f"({pct(la.get('flagged_fraction'))}) look mislabelled (suspected label issues, "
           f"{la.get('flagged_test', '?')} of them in test); on the test products not "
           f"flagged the model is right {pct(clean)} of the time vs {pct(official)} on the official labels")
    if not missing(clean) and not missing(official) and clean > official:
        out += (f": {la.get('fusion_test_errors_flagged', '?')} of its {la.get('fusion_test_errors', '?')} test "
                "mistakes are on products whose label is itself suspect")
    return out + "."


def answer(metrics: dict, ev: Evidence) -> list[str]:
    """The product manager's answer, one bullet each: model, accuracy with its bootstrap interval, name only,
    the confidence rule, the most confused categories, the label audit."""
    if not selected_fusion(metrics.get("fusion") or {}):
        return ["No recommended model yet: stage `fusion` has not written metrics/fusion.json.",
                _label_audit(metrics)]
    return [_model(metrics), _accuracy(metrics, ev), _name_only(metrics), _confidence(metrics), _confusions(ev),
            _label_audit(metrics)]


# ---------------------------------------------------------------- targets

def _measured(t: dict) -> str:
    if t["value"] is None:
        return f"n/a: {t['how']}"
    return f"{f3(t['value'])} ({t['source']})"


def _public(t: dict) -> str:
    p = t["public"]
    return t["public_note"] or ("none" if p is None else f"{p:.2f}" if round(p, 2) == p else f"{p:.3f}")


def target_rows(measured: list[dict]) -> list[list[str]]:
    """The targets table (TARGET_COLUMNS), one row per findings.targets entry."""
    return [[t["what"] + (" (earlier aim)" if t["earlier"] else ""), _measured(t),
             ("—" if t["earlier"] else "not measured") if t["now"] is None else f3(t["now"]), _public(t),
             f"{'≤' if t['lower_is_better'] else '≥'} {t['threshold']:.2f}",
             status(t["value"], t["threshold"], t["lower_is_better"])] for t in measured]


def targets_markdown(metrics: dict, table: pd.DataFrame) -> str:
    """The targets table as Markdown for README.md (between the targets markers)."""
    rows = target_rows(targets(metrics, table))
    head = "| " + " | ".join(TARGET_COLUMNS) + " |\n" + "|---" * len(TARGET_COLUMNS) + "|\n"
    return head + "".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |\n" for r in rows)


def conclusion(said: dict[str, str], metrics: dict, table: pd.DataFrame, ev: Evidence) -> list[Block]:
    """The answer for a product manager, then `said` (findings.findings(...)), one paragraph each, then the
    targets table."""
    return ([Para("**The answer, for a product manager.**"), Bullets(answer(metrics, ev))]
            + [Para(text) for text in said.values()]
            + [Heading("Targets", 3),
               Table(TARGET_COLUMNS, target_rows(targets(metrics, table)),
                     caption="Measured from metrics/: ✓ met, ✗ not met, not run (no number yet)")])
