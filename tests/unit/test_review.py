"""The review command's pure parts on generated metric dicts, lock files and predictions: comparison,
noise bands, verdicts, stages and plots from dvc.lock, Markdown; revision resolution on a throwaway git
repository (git only, no DVC run)."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    f1_score,
    precision_recall_fscore_support,
)

from fkstudy.review import bands, cli, compare, lockdiff, revs
from fkstudy.review.compare import Band, Change
from fkstudy.review.render import Review, render, signed, value

CLASSES = ["Baby Care", "Home Decor & Festive Needs", "Watches"]


def predictions(n: int, accuracy: float, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    actual = [CLASSES[i % len(CLASSES)] for i in range(n)]
    predicted = [a if rng.random() < accuracy else CLASSES[(CLASSES.index(a) + 1) % len(CLASSES)] for a in actual]
    return actual, predicted


def csv_text(actual, predicted) -> str:
    return "id,actual,predicted\n" + "".join(f"p{i},{a},{p}\n" for i, (a, p) in enumerate(zip(actual, predicted)))


def entry(old, new) -> dict:
    e = {"old": old, "new": new}
    if compare.is_number(old) and compare.is_number(new):
        e["diff"] = new - old
    return e


# ----------------------------------------------------------------------------------------------- bands
def test_predictions_file_maps_to_its_metrics_file_and_prefix():
    assert bands.metrics_file_of("plots/text_classifier/bow/confusion.csv") == ("metrics/text_classifier/bow.json", "")
    assert bands.metrics_file_of("plots/train/vgg16_base/confusion.csv") == ("metrics/train/vgg16_base.json", "")
    assert bands.metrics_file_of("plots/fusion/fusion_confusion.csv") == ("metrics/fusion.json", "fusion_")
    assert bands.metrics_file_of("plots/fusion/weights.csv") is None
    assert bands.metrics_file_of("plots/train/vgg16_base/confusion.png") is None


def test_read_predictions_needs_actual_and_predicted():
    assert bands.read_predictions("id,actual,predicted\na,X,Y\n") == (["X"], ["Y"])
    with pytest.raises(ValueError, match="actual, predicted"):
        bands.read_predictions("id,label\na,X\n")


def test_bootstrap_point_estimates_are_sklearn_scores():
    actual, predicted = predictions(90, 0.7)
    labels, stats = bands.intervals(actual, predicted, resamples=200)
    assert labels == sorted(CLASSES)
    assert stats["accuracy"][0] == pytest.approx(accuracy_score(actual, predicted))
    assert stats["macro_f1"][0] == pytest.approx(f1_score(actual, predicted, average="macro"))
    assert stats["weighted_f1"][0] == pytest.approx(f1_score(actual, predicted, average="weighted"))
    assert stats["ari"][0] == pytest.approx(adjusted_rand_score(actual, predicted))
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, labels=labels, zero_division=0)
    for stat, ref in (("precision", p), ("recall", r), ("f1", f)):
        np.testing.assert_allclose(stats[stat][0], ref)
    for point, low, high in stats.values():  # the full-sample score lies inside its interval
        assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)


def test_bootstrap_band_is_seeded_and_narrows_with_more_products():
    small = bands.half_widths(*predictions(100, 0.8), {"test_accuracy": accuracy_score(*predictions(100, 0.8))})
    again = bands.half_widths(*predictions(100, 0.8), {"test_accuracy": accuracy_score(*predictions(100, 0.8))})
    big_pred = predictions(1600, 0.8)
    big = bands.half_widths(*big_pred, {"test_accuracy": accuracy_score(*big_pred)})
    assert small == again
    # binomial: half-width of a 95 % interval ≈ 1.96 sqrt(p(1-p)/n)
    assert small["test_accuracy"] == pytest.approx(1.96 * np.sqrt(0.8 * 0.2 / 100), rel=0.25)
    assert big["test_accuracy"] < small["test_accuracy"] / 3


def test_half_widths_match_keys_prefixes_class_keys_and_recorded_values():
    actual, predicted = predictions(60, 0.75)
    acc = accuracy_score(actual, predicted)
    f1 = f1_score(actual, predicted, labels=sorted(CLASSES), average=None)
    values = {"fusion_test_accuracy": round(acc, 4), "fusion_macro_f1": 0.0,  # not these predictions' value
              "fusion_per_class.home_decor_and_festive_needs.f1": round(f1[1], 4),
              "concat_test_accuracy": round(acc, 4), "fusion_val_accuracy": round(acc, 4)}
    widths = bands.half_widths(actual, predicted, values, "fusion_", resamples=300)
    assert set(widths) == {"fusion_test_accuracy", "fusion_per_class.home_decor_and_festive_needs.f1"}
    plain = bands.half_widths(actual, predicted, {"per_class.Watches.recall": 1.0 * (
        sum(a == p == "Watches" for a, p in zip(actual, predicted)) / actual.count("Watches")), "macro_f1": "x"},
        resamples=300)
    assert set(plain) == {"per_class.Watches.recall"}
    assert all(w > 0 for w in [*widths.values(), *plain.values()])


# --------------------------------------------------------------------------------------------- compare
@pytest.mark.parametrize("key, sense", [
    ("test_accuracy", 1), ("macro_f1", 1), ("tsne.ari_mean", 1), ("per_class.Baby Care.f1", 1),
    ("silhouette", 1), ("nmi_mean", 1), ("log_loss", -1), ("test_loss", -1), ("n_seeds", None),
    ("silhouette_rows", None), ("per_class.Watches.support", None), ("cv_folds", None), ("best_epoch", None),
    ("fusion_minus_best_single", None), ("dim", None), ("C", None), ("variant", None), ("variance", None)])
def test_direction(key, sense):
    assert compare.direction(key) == sense


def test_changed_metrics_leave_out_unchanged_timings_and_spread_keys():
    diff = {"metrics/cluster/x.json": {
        "ari": entry(0.40, 0.45), "ari_std": entry(0.01, 0.03), "n": entry(73, 73),
        "tsne.nmi_mean": entry(0.5, 0.49), "tsne.nmi_std": entry(0.02, 0.02),
        "fit_seconds": entry(3.0, 9.0), "weights": entry("imagenet", "random-init")},
        "reports/timings/cluster/x.json": {"seconds": entry(1.0, 2.0)},
        "metrics/multiseed/v.json": {"test_accuracy": entry(0.80, 0.84), "test_accuracy_std": entry(0.01, 0.005),
                                     "test_accuracy_ci95_low": entry(0.79, 0.83)},
        "metrics/text_classifier/t.json": {"cv_macro_f1": entry(0.90, 0.93), "cv_macro_f1_std": entry(0.02, 0.01)}}
    changes = {(c.file.split("/")[-1], c.key): c for c in compare.changed_metrics(diff)}
    assert set(changes) == {("x.json", "ari"), ("x.json", "tsne.nmi_mean"), ("x.json", "weights"),
                            ("v.json", "test_accuracy"), ("t.json", "cv_macro_f1")}
    assert changes[("x.json", "ari")].band == Band(0.03, "seed std")  # the larger of both revisions'
    assert changes[("x.json", "tsne.nmi_mean")].band == Band(0.02, "seed std")
    assert changes[("t.json", "cv_macro_f1")].band == Band(0.02, "CV fold std")
    assert changes[("x.json", "weights")].band is None


def test_summary_key_takes_the_spread_of_the_metric_it_repeats():
    diff = {"m.json": {"silhouette": entry(0.52, 0.55), "tsne.silhouette_clusters_mean": entry(0.52, 0.55),
                       "tsne.silhouette_clusters_std": entry(0.02, 0.01), "other": entry(0.1, 0.2)}}
    changes = {c.key: c for c in compare.changed_metrics(diff)}
    assert changes["silhouette"].band == Band(0.02, "seed std of tsne.silhouette_clusters_mean")
    assert changes["other"].band is None


@pytest.mark.parametrize("old, new, band, sense, expected", [
    (0.50, 0.52, 0.02, 1, "within noise"),  # |Δ| equal to the band: within
    (0.50, 0.53, 0.02, 1, "better"), (0.50, 0.47, 0.02, 1, "worse"),
    (1.00, 0.90, 0.05, -1, "better"), (1.00, 1.10, 0.05, -1, "worse"),
    (0.50, 0.60, 0.02, None, "changed"),  # beyond noise, direction unknown
    (0.50, 0.60, None, 1, "changed"),  # no noise estimate
    (None, 0.6, 0.02, 1, "added"), (0.6, None, 0.02, 1, "removed"), ("a", "b", None, None, "changed")])
def test_verdict(old, new, band, sense, expected):
    assert compare.verdict(old, new, Band(band, "seed std") if band is not None else None, sense) == expected


def test_judge_prefers_the_own_spread_then_the_extra_band_and_groups():
    changes = [Change("m.json", "ari", 0.4, 0.5, Band(0.01, "seed std"), 1),
               Change("t.json", "test_accuracy", 0.80, 0.82, None, 1),
               Change("t.json", "macro_f1", 0.80, 0.70, None, 1),
               Change("t.json", "val_accuracy", 0.80, 0.90, None, 1),
               Change("t.json", "new_metric", None, 0.90, None, 1)]
    extra = {("m.json", "ari"): Band(1.0, "bootstrap 95 %"), ("t.json", "test_accuracy"): Band(0.05, "bootstrap 95 %"),
             ("t.json", "macro_f1"): Band(0.05, "bootstrap 95 %")}
    judged = {c.key: c for c in compare.judge(changes, extra)}
    assert judged["ari"].band.source == "seed std" and judged["ari"].verdict == "better"
    assert judged["test_accuracy"].verdict == "within noise" and judged["macro_f1"].verdict == "worse"
    g = compare.groups(list(judged.values()))
    assert [c.key for c in g["beyond"]] == ["macro_f1", "ari"]  # worse first
    assert [c.key for c in g["within"]] == ["test_accuracy"]
    assert [c.key for c in g["unbanded"]] == ["val_accuracy"] and [c.key for c in g["added"]] == ["new_metric"]
    assert compare.groups([Change("t.json", "n_seeds", 2, 3, None, None, "changed")])["other"]
    assert compare.needs_band(changes[1]) and not compare.needs_band(changes[0])


def test_param_changes():
    diff = {"params.yaml": {"cluster.n_seeds": {"old": 5, "new": 6, "diff": 1}, "x": {"old": 1, "new": 1.0}}}
    assert compare.param_changes(diff) == [compare.ParamChange("params.yaml", "cluster.n_seeds", 5, 6)]


# -------------------------------------------------------------------------------------------- lockdiff
def stage(cmd="python s.py", deps=None, params=None, outs=None) -> dict:
    return {"cmd": cmd, "deps": [{"path": p, "hash": "md5", "md5": h} for p, h in (deps or {}).items()],
            "params": {"params.yaml": params or {}},
            "outs": [{"path": p, "hash": "md5", "md5": h} for p, h in (outs or {}).items()]}


def test_stage_changes_and_why():
    old = {"schema": "2.0", "stages": {
        "ingest": stage(deps={"stages/ingest.py": "a"}, outs={"data/c.parquet": "1"}),
        "cluster@x": stage(deps={"data/c.parquet": "1"}, params={"cluster": {"n_seeds": 5, "k": 7}},
                           outs={"metrics/cluster/x.json": "m1", "plots/cluster/x/scatter.png": "p1"}),
        "report": stage(deps={"metrics/cluster": "d1.dir"},
                        outs={"plots/report/a.png": "r1", "plots/report/b.csv": "b"}),
        "flaky": stage(outs={"reports/f.json": "1"}),
        "gone": stage()}}
    new = {"schema": "2.0", "stages": {
        "ingest": stage(deps={"stages/ingest.py": "a"}, outs={"data/c.parquet": "1"}),
        "cluster@x": stage(deps={"data/c.parquet": "1"}, params={"cluster": {"n_seeds": 6, "k": 7}},
                           outs={"metrics/cluster/x.json": "m2", "plots/cluster/x/scatter.png": "p2"}),
        "report": stage(cmd="python r.py --v2", deps={"metrics/cluster": "d2.dir"},
                        outs={"plots/report/a.png": "r2", "plots/report/c.csv": "c"}),
        "flaky": stage(outs={"reports/f.json": "2"}),
        "added": stage()}}
    changes = lockdiff.stage_changes(old, new)
    assert [(s.name, s.status) for s in changes] == [("cluster@x", "re-ran"), ("report", "re-ran"), ("flaky", "re-ran"),
                                                      ("added", "new"), ("gone", "removed")]
    why = {s.name: s.reasons for s in changes}
    assert why["cluster@x"] == ("params: cluster.n_seeds",)
    assert why["report"] == ("command changed", "deps: metrics/cluster")
    assert why["flaky"] == ("outputs only (same inputs)",)
    assert lockdiff.plot_changes(old, new) == [
        ("plots/cluster/x/scatter.png", "changed"), ("plots/report/a.png", "changed"),
        ("plots/report/b.csv", "removed"), ("plots/report/c.csv", "added")]
    assert lockdiff.stage_changes(old, old) == [] and lockdiff.plot_changes(new, new) == []
    assert lockdiff.stage_changes(None, {}) == []


def test_many_changed_deps_are_counted_not_listed():
    old = stage(deps={f"d{i}": "a" for i in range(6)})
    new = stage(deps={f"d{i}": "b" for i in range(6)})
    (change,) = lockdiff.stage_changes({"stages": {"s": old}}, {"stages": {"s": new}})
    assert change.reasons == ("deps: d0, d1, d2 (+3)",)


# ---------------------------------------------------------------------------------------------- render
def sample_review(**kw) -> Review:
    metrics = compare.judge([
        Change("metrics/cluster/text_tfidf.json", "ari", 0.58, 0.66, Band(0.01, "seed std"), 1),
        Change("metrics/text_classifier/bow.json", "macro_f1", 0.93, 0.88, Band(0.02, "bootstrap 95 %"), 1),
        Change("metrics/train/v.json", "test_loss", 0.80, 0.95, Band(0.05, "bootstrap 95 %"), -1),
        Change("metrics/cluster/text_bow.json", "ari", 0.50, 0.505, Band(0.01, "seed std"), 1),
        Change("metrics/train/v.json", "val_accuracy", 0.80, 0.82, None, 1),
        Change("metrics/fusion.json", "fusion_mode", "concat", "geometric|proba", None, None)])
    return Review("`main` (1a2b3c4)", "the workspace",
                  params=[compare.ParamChange("params.yaml", "cluster.n_seeds", 5, 6)], metrics=metrics,
                  stages=[lockdiff.StageChange("cluster@text_tfidf", "re-ran", ("params: cluster.n_seeds",)),
                          lockdiff.StageChange("report", "re-ran", ("deps: metrics/cluster",))],
                  plots=[("plots/cluster/text_tfidf/scatter.png", "changed")],
                  plots_html="reports/review_plots/index.html", **kw)


def test_report_summary_tables_and_rules():
    text = render(sample_review())
    lines = text.splitlines()
    assert lines[0] == "## Review: `main` (1a2b3c4) → the workspace"
    assert lines[2] == ("**3 metrics moved beyond noise: 1 better, 2 worse; 1 within noise; 1 changed with no noise "
                        "estimate; 1 other value changed (counts, settings); params changed: cluster.n_seeds 5 → 6; "
                        "2 stages re-ran; 1 plot changed.**")
    assert "| `cluster.n_seeds` | 5 | 6 |" in text
    assert "| `cluster/text_tfidf: ari` | 0.58 | 0.66 | +0.08 | ±0.01 (seed std) | **better** |" in text
    assert "| `text_classifier/bow: macro_f1` | 0.93 | 0.88 | -0.05 | ±0.02 (bootstrap 95 %) | **worse** |" in text
    assert "**worse** |" in next(line for line in lines if "test_loss" in line)  # lower is better
    assert "geometric\\|proba" in text  # a pipe in a value does not break the table
    assert text.index("<summary>1 other value changed (counts, settings)</summary>") < text.index("fusion_mode")
    within = text.index("<details><summary>1 metric within noise</summary>")
    assert text.index("`cluster/text_bow: ari`") > within and text.index("</details>") > within
    assert "`reports/review_plots/index.html`" in text and "| `report` | re-ran | deps: metrics/cluster |" in text
    assert "within noise* when |target − base| ≤ its noise band" in text
    assert text.index("### Metrics beyond noise") < text.index("### Metrics changed, no noise estimate") < within


def test_report_caps_long_tables():
    r = sample_review(max_rows=2)
    r.params = [compare.ParamChange("params.yaml", f"p{i}", i, i + 1) for i in range(7)]
    text = render(r)
    assert "| `p1` |" in text and "| `p2` |" not in text and "… and 5 more." in text
    assert "params changed: p0 0 → 1, p1 1 → 2, p2 2 → 3 and 4 more" in text


def test_nothing_changed():
    text = render(Review("`HEAD` (1a2b3c4)", "`HEAD` (1a2b3c4)"))
    assert "Nothing changed between `HEAD` (1a2b3c4) and `HEAD` (1a2b3c4)" in text
    assert "###" not in text and "metric" in text


def test_values_and_deltas():
    assert [value(v) for v in (None, True, 3, 0.5864, 0.58640001, 14714688.0, -0.0, "x" * 60)] == [
        "—", "true", "3", "0.5864", "0.5864", "14714688", "0", "x" * 39 + "…"]
    assert (signed(0.0249), signed(-0.05), signed(None)) == ("+0.0249", "-0.05", "")


# ------------------------------------------------------------------------------- revisions (git only)
def git(repo, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def tiny_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    (repo / "plots").mkdir()
    (repo / "plots" / "confusion.csv").write_text("id,actual,predicted\na,X,X\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    git(repo, "checkout", "-qb", "feature")
    (repo / "dvc.yaml").write_text("stages: {} # two\n")
    git(repo, "commit", "-qam", "two")
    return repo


def test_resolve_git_revisions_experiments_and_the_workspace(tiny_repo):
    one, two = git(tiny_repo, "rev-parse", "main"), git(tiny_repo, "rev-parse", "HEAD")
    git(tiny_repo, "update-ref", f"refs/exps/{two[:2]}/{two[2:]}/my-exp", one)  # an experiment over `two`
    assert revs.resolve(tiny_repo, None) == revs.Rev("workspace", None, "workspace")
    assert revs.resolve(tiny_repo, "HEAD~1") == revs.Rev("HEAD~1", one, "git")
    exp = revs.resolve(tiny_repo, "my-exp")
    assert exp == revs.Rev("my-exp", one, "experiment") and exp.label == f"experiment `my-exp` ({one[:7]})"
    assert revs.resolve(tiny_repo, "workspace").label == "the workspace"
    with pytest.raises(revs.ReviewError, match="neither a git revision nor a DVC experiment"):
        revs.resolve(tiny_repo, "nope")
    # defaults: merge-base with main for the workspace; the baseline (parent commit) for an experiment
    assert revs.default_base(tiny_repo, revs.resolve(tiny_repo, None)).sha == one
    assert revs.baseline(tiny_repo, revs.resolve(tiny_repo, "HEAD")).sha == one
    assert revs.read_at(tiny_repo, revs.Rev("x", one), "dvc.yaml") == "stages: {}\n"
    assert revs.read_at(tiny_repo, revs.Rev("workspace", None, "workspace"), "dvc.yaml") == "stages: {} # two\n"
    assert revs.read_at(tiny_repo, revs.Rev("x", one), "missing.txt") is None
    assert revs.failed_revisions(
        f"DVC failed to load some metrics for following revisions: '{one}', 'workspace'.\n") == [one[:7], "workspace"]


def test_bootstrap_bands_read_each_revisions_predictions(tiny_repo, monkeypatch):
    actual, predicted = predictions(90, 0.7)
    old_acc = round(accuracy_score(actual, predicted), 4)
    new_pred = list(actual[:60]) + predicted[60:]
    new_acc = round(accuracy_score(actual, new_pred), 4)
    texts = {"old": csv_text(actual, predicted), "new": csv_text(actual, new_pred)}
    monkeypatch.setattr(revs, "read_at", lambda repo, rev, path: texts[rev.spec])
    lock = {"stages": {"t": stage(outs={"plots/text_classifier/t/confusion.csv": "h"})}}
    change = Change("metrics/text_classifier/t.json", "test_accuracy", old_acc, new_acc, None, 1)
    out = cli.bootstrap_bands(tiny_repo, revs.Rev("old"), revs.Rev("new"), [change], (lock, lock))
    band = out[("metrics/text_classifier/t.json", "test_accuracy")]
    assert band.source == "bootstrap 95 %"
    only_old = bands.half_widths(actual, predicted, {"test_accuracy": old_acc})["test_accuracy"]
    assert band.width >= only_old  # the larger of both revisions'


def test_command_is_registered_and_fails_in_one_line(tmp_path, capsys):
    from fkstudy.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["review", "--help"])
    assert exc.value.code == 0 and "BASE_REV" in capsys.readouterr().out
    assert main(["review", "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_in_ci_the_plots_page_points_at_the_run():
    assert cli.ci_run_url({}) is None
    env = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "me/fk"}
    assert cli.ci_run_url(env) == "https://github.com/me/fk/actions/runs/42"
    text = render(sample_review(plots_run=cli.ci_run_url(env)))
    assert "attached to [this run](https://github.com/me/fk/actions/runs/42) as the artifact `review-plots`" in text
