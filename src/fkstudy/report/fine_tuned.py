"""The report's section 7.5: a text encoder fine-tuned end to end (metrics/fine_tune_text/<encoder>.json) against
the same encoder frozen under the text classifiers' head, per view (name + description, the name alone), with
McNemar's test on the same test products."""
from __future__ import annotations

from .document import Block, Para, Table
from .findings import group
from .formatting import f3
from .sections import Figures, cost_note, not_run

VIEWS = {"both": "name + description", "name": "name only", "description": "description only"}


def blocks(metrics: dict, fig: Figures) -> list[Block]:
    runs = group(metrics, "fine_tune_text/")
    if not runs:
        return [not_run("fine-tuned text encoder", "fine_tune_text")]
    out: list[Block] = []
    for name, m in sorted(runs.items()):
        target = ("the category tree's sub-categories, read at the top level" if m.get("target") == "category_l2"
                  else "the 7 categories")
        out.append(Para(f"**{name}** trained end to end (encoder, mean pooling and a linear head over {target}) on "
                        f"the train products, each once per view ({m.get('n_train_examples')} examples); epoch "
                        f"{m.get('best_epoch')} of {m.get('epochs')} kept by its val loss. Beside it, the same encoder "
                        f"frozen under the text classifiers' head (C {m.get('frozen_C')} chosen on val), fitted on the "
                        "same examples. Both scored once on the test products, per view."))
        rows = []
        for view, t in m.get("test", {}).items():
            ft, fz, mc = t.get("fine_tuned", {}), t.get("frozen", {}), t.get("mcnemar", {})
            val = m.get("val", {}).get(view, {})
            rows.append([VIEWS.get(view, view), f3(val.get("fine_tuned_accuracy")), f3(val.get("frozen_accuracy")),
                         f3(ft.get("accuracy")), f3(ft.get("macro_f1")), f3(fz.get("accuracy")), f3(fz.get("macro_f1")),
                         f"{mc.get('only_a_right')} vs {mc.get('only_b_right')}, p {f3(mc.get('p_value'))}"])
        out.append(Table(["view", "val accuracy: fine-tuned", "val accuracy: frozen", "test accuracy: fine-tuned",
                          "macro-F1: fine-tuned", "test accuracy: frozen", "macro-F1: frozen",
                          "McNemar (only fine-tuned right vs only frozen right)"], rows))
        out.append(fig(f"plots/fine_tune_text/{name}/history.png", f"{name} fine-tuned: loss and accuracy per epoch"))
    out.append(cost_note("Fine-tuning time"))
    return out
