"""The label audit section: how many catalogue labels look wrong (metrics/label_audit.json), between which
categories (plots/label_audit/pairs.csv), the most likely cases (reports/label_issues.csv, with their photos
in plots/label_audit/examples.png), and the selected fusion's test accuracy on the products not flagged
beside the official one. The audit relabels nothing: every other number of the report uses the official
labels.
"""
from __future__ import annotations

from .document import Block, Para, Table
from .evidence import LABEL_EXAMPLES, Evidence
from .formatting import f3, missing, pct
from .sections import Figures, not_run

PAIRS_SHOWN = 10
EXAMPLES_SHOWN = 10
NAME_CHARS = 70


def _short(name: str) -> str:
    name = " ".join(str(name).split())
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def _pairs(ev: Evidence) -> Block:
    t = ev.label_pairs
    if t is None:
        return Para("(suspected label errors per category pair: not produced)", "note")
    if t.empty:
        return Para("No category pair has a suspected label error.")
    shown = t.head(PAIRS_SHOWN)
    more = len(t) - len(shown)
    return Table(["given category", "suggested category", "products"],
                 [[r["given"], r["suggested"], r["products"]] for r in shown.to_dict("records")],
                 caption="Suspected label errors per category pair" + (f" (top {len(shown)} of {len(t)})"
                                                                        if more > 0 else ""))


def _examples(ev: Evidence) -> Block:
    t = ev.label_issues
    if t is None:
        return Para("(ranked suspected label errors, reports/label_issues.csv: not produced)", "note")
    if t.empty:
        return Para("No product is flagged.")
    shown = t.head(EXAMPLES_SHOWN)
    return Table(["rank", "product name", "split", "given label", "suggested label", "confidence",
                  "probability of the given label"],
                 [[r.get("rank", i + 1), _short(r.get("name", "")), r.get("split", ""), r.get("given", ""),
                   r.get("suggested", ""), f3(_float(r.get("suggested_probability"))),
                   f3(_float(r.get("given_probability")))] for i, r in enumerate(shown.to_dict("records"))],
                 caption=f"The {len(shown)} most likely label errors (of {len(t)}, reports/label_issues.csv)")


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _accuracy(la: dict) -> Para:
    official, clean = la.get("fusion_test_accuracy"), la.get("fusion_test_accuracy_unflagged")
    if missing(official):
        return Para("Test accuracy without the flagged products: not measured.", "note")
    diff = "" if missing(clean) else f" ({100 * (clean - official):+.1f} points)"
    return Para(f"Selected fusion on test: **{f3(official)}** on the official labels "
                f"({la.get('fusion_test_errors', '?')} mistakes) and **{f3(clean)}** on the test products not "
                f"flagged{diff}; {la.get('flagged_test', '?')} test products are flagged, "
                f"{la.get('fusion_test_errors_flagged', '?')} of the model's mistakes are among them. The official "
                "number stays the study's.")


def label_audit(metrics: dict, ev: Evidence, fig: Figures) -> list[Block]:
    la = metrics.get("label_audit")
    if not la:
        return [not_run("label audit", "label_audit")]
    return [Para(f"Confident learning (cleanlab) on out-of-fold probabilities: a {la.get('text_set', '?')} text head "
                 f"and a {la.get('image_set', '?')} image head, pooled, score every one of the "
                 f"{la.get('n_products', '?')} products without having seen it (out-of-fold accuracy "
                 f"{f3(la.get('out_of_fold_accuracy'))}). **{la.get('n_flagged', '?')} suspected label errors** "
                 f"({pct(la.get('flagged_fraction'))}: train {la.get('flagged_train', '?')}, val "
                 f"{la.get('flagged_val', '?')}, test {la.get('flagged_test', '?')}). Nothing is relabelled."),
            _pairs(ev), _examples(ev), _accuracy(la),
            fig(LABEL_EXAMPLES, "suspected label errors: photo, given → suggested category (probability)")]
