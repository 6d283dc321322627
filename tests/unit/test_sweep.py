"""fkstudy.sweep: the declared sweeps are runnable, a test figure is refused, the choice follows the seed-std
rule against what runs now, and --apply writes one params key leaving the rest of params.yaml as it was.

`dvc exp show --json` is built here in DVC 3's own shape (dvc.repo.experiments.serialize: ExpState / ExpRange /
ExpExecutor); tests/integration/test_sweep.py runs real queued experiments."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from fkstudy import sweep

ROOT = Path(__file__).resolve().parents[2]


def exp_state(rev: str, name: str | None, params: dict, metrics: dict) -> dict:
    return {"rev": rev, "name": name, "error": None, "experiments": None,
            "data": {"rev": rev, "timestamp": "2026-12-07T00:00:00", "meta": {"has_checkpoints": False},
                     "params": {"params.yaml": {"data": params}}, "deps": {}, "outs": {},
                     "metrics": {f: {"data": d} for f, d in metrics.items()}}}


def exp_show(base_params: dict, exps: list[tuple[str, dict, dict, str]]) -> list[dict]:
    """[workspace, baseline commit with its experiments]; exps: (name, params, metrics, executor state)."""
    ranges = [{"name": name, "revs": [exp_state(f"{i:040x}", name, p, m)],
               "executor": None if state == "success" else {"state": state, "name": "dvc-task", "local": None}}
              for i, (name, p, m, state) in enumerate(exps, start=1)]
    base = exp_state("b" * 40, "main", base_params, {})
    base["experiments"] = ranges
    return [exp_state("workspace", None, base_params, {}), base]


SINGLE = {"grid": {"tf.ngram": [1, 2]}, "targets": ["cluster@t"],
          "select": {"metric": "m/c.json:ari_trainval_rows", "std": "m/c.json:ari_trainval_rows_std",
                     "also": ["m/k.json:cv_accuracy"]}}


def single_show(ari: dict[int, float], std: float, state: str = "success") -> list[dict]:
    return exp_show({"tf": {"ngram": 1}}, [
        (f"s-{i}", {"tf": {"ngram": n}}, {"m/c.json": {"ari_trainval_rows": ari[n], "ari_trainval_rows_std": std},
                                          "m/k.json": {"cv_accuracy": 0.9}}, state)
        for i, n in enumerate((1, 2))])


def test_the_declared_sweeps_name_real_params_stages_and_metrics():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    sweeps = sweep.load(ROOT)
    assert {"tfidf", "tsne_perplexity", "vgg16_pooling"} <= set(sweeps)
    for s in sweeps.values():
        for key in [*s.grid, *s.fixed, *([s.per, s.write] if s.per else [])]:
            sweep.lookup(params, key, f"params.yaml ({s.name})")
        for target in s.targets:   # a stage or a foreach group
            assert target.split("@")[0] in dvc, (s.name, target)
        items = sweep.lookup(params, s.per, "params.yaml") if s.per else [None]
        for spec in [s.metric, s.std, *s.also]:
            for item in items:
                path = spec.replace("{item}", item or "").split(":")[0]
                assert (ROOT / path).is_file(), (s.name, path)   # a committed metrics file of the pipeline
        current = sweep._baseline_values(s, params, items[0])
        assert any(all(p[k] == v for k, v in current.items()) for p in s.points()), \
            f"{s.name}: what runs now must be a grid point"


@pytest.mark.parametrize("change, message", [
    ({"select": {"metric": "m/c.json:ari_test_rows"}}, r"s.select.metric: 'm/c.json:ari_test_rows' is a test-split"),
    ({"select": {"metric": "m/c.json:ari", "also": ["m/k.json:test_accuracy"]}}, r"s.select.also: .* test-split"),
    ({"select": {"metric": "m/c.json"}}, r"s.select.metric: expected '<metrics file>:<key>'"),
    ({"grid": {"tf.ngram": []}}, r"s.grid: expected a mapping of params keys to non-empty lists"),
    ({"gird": {}}, r"s: unknown key\(s\) \['gird'\]"),
    ({"per": "pipeline.cluster"}, r"s: `per` and `write` go together"),
    ({"per": "pipeline.cluster", "write": "x"}, r"per-item sweep varies one key and its metric file names \{item\}"),
])
def test_a_bad_declaration_is_one_line_naming_the_sweep_and_key(change, message):
    with pytest.raises(sweep.SweepError, match=message):
        sweep.parse("s", {**SINGLE, **change})


def test_points_are_every_combination_with_the_fixed_keys_and_go_to_dvc_as_yaml():
    s = sweep.parse("s", {**SINGLE, "grid": {"a": [1, 2], "b": [False, True]}, "fixed": {"c": {}}})
    assert s.points() == [{"a": 1, "b": False, "c": {}}, {"a": 1, "b": True, "c": {}},
                          {"a": 2, "b": False, "c": {}}, {"a": 2, "b": True, "c": {}}]
    now = {"a": 1, "b": True, "c": {"x": 50, "y": 5}, "d": "name", "e": [3]}
    args = sweep.set_args({"a": 2, "b": False, "c": {"y": 15, "z": 1}, "d": "both", "e": [1, 2]}, now)
    assert args == ["-S", "a=2", "-S", "b=false", "-S", "~c.x", "-S", "++c.y=15", "-S", "++c.z=1",
                    "-S", 'd="both"', "-S", "e=[1, 2]"]
    assert sweep.set_args({"c": {}}, {"c": {}}) == []


def test_the_overrides_give_exactly_the_point_through_dvc_s_own_parser(tmp_path):
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    now = yaml.safe_load(path.read_text())
    assert now["cluster"]["tsne_perplexity_by_set"]   # a set has its own now: the sweep's {} must clear it
    point = {"cluster.tsne_perplexity": 50, "cluster.tsne_perplexity_by_set": {},
             "text_features.tfidf.sublinear_tf": True, "text_features.tfidf.field": "name"}
    apply_overrides(path, [a for a in sweep.set_args(point, now) if a != "-S"])
    after = yaml.safe_load(path.read_text())
    for key, value in point.items():
        assert sweep.lookup(after, key, "params") == value, key
    apply_overrides(path, [a for a in sweep.set_args({"cluster.tsne_perplexity_by_set": {"text_use": 80}}, after)
                           if a != "-S"])
    assert yaml.safe_load(path.read_text())["cluster"]["tsne_perplexity_by_set"] == {"text_use": 80}


def test_a_gain_within_the_seed_std_keeps_what_runs_now():
    s = sweep.parse("s", SINGLE)
    kept = sweep.select(s, single_show({1: 0.60, 2: 0.61}, std=0.02))
    assert kept["chosen"]["s"] == {"exp": "s-0", "params": {"tf.ngram": 1}, "changed": False}
    rows = kept["table"][0]["rows"]
    assert [(r["baseline"], r["chosen"]) for r in rows] == [(True, True), (False, False)]
    assert rows[1]["mean"] == 0.61 and rows[1]["cv_accuracy"] == 0.9
    moved = sweep.select(s, single_show({1: 0.60, 2: 0.65}, std=0.02))
    assert moved["chosen"]["s"] == {"exp": "s-1", "params": {"tf.ngram": 2}, "changed": True}
    columns, table = sweep.table(moved)
    assert columns == ["ngram", "ari_trainval_rows", "cv_accuracy", ""]
    assert table == [["1", "0.6000 ± 0.0200", "0.9000", "now"], ["2", "0.6500 ± 0.0200", "0.9000", "chosen"]]


def test_unfinished_or_stale_experiments_are_named():
    s = sweep.parse("s", SINGLE)
    with pytest.raises(sweep.SweepError, match=r"no finished experiment s-0 on bbbbbbb \(run `fkstudy sweep run s`"):
        sweep.select(s, single_show({1: 0.6, 2: 0.7}, 0.01, state="failed"))
    show = single_show({1: 0.6, 2: 0.7}, 0.01)
    show[1]["experiments"][1]["revs"][0]["data"]["params"]["params.yaml"]["data"]["tf"]["ngram"] = 3
    with pytest.raises(sweep.SweepError, match=r"experiment s-1: tf.ngram is 3, the sweep's point 1 says 2"):
        sweep.select(s, show)
    other = sweep.parse("s", {**SINGLE, "grid": {"tf.ngram": [2, 3]}, "select": {"metric": "m/c.json:ari_trainval_rows"}})
    with pytest.raises(sweep.SweepError, match=r"the workspace's \{'tf.ngram': 1\} is not a grid point"):
        sweep.select(other, exp_show({"tf": {"ngram": 1}}, [
            (f"s-{i}", {"tf": {"ngram": n}}, {"m/c.json": {"ari_trainval_rows": 0.5, "ari_trainval_rows_std": 0.0}},
             "success") for i, n in enumerate((2, 3))]))


def test_one_choice_per_item_against_each_item_s_own_value():
    s = sweep.parse("p", {"grid": {"cl.perp": [30, 50]}, "fixed": {"cl.by_set": {}}, "per": "pipe.sets",
                          "write": "cl.by_set", "targets": ["cluster"],
                          "select": {"metric": "m/{item}.json:ari_trainval_rows",
                                     "std": "m/{item}.json:ari_trainval_rows_std"}})
    base = {"pipe": {"sets": ["a", "b", "c"]}, "cl": {"perp": 30, "by_set": {"b": 50, "d": 15}}}   # d: not swept
    ari = {30: {"a": 0.50, "b": 0.60, "c": 0.70}, 50: {"a": 0.60, "b": 0.61, "c": 0.71}}
    exps = [(f"p-{i}", {"pipe": base["pipe"], "cl": {"perp": v, "by_set": {}}},
             {f"m/{k}.json": {"ari_trainval_rows": a, "ari_trainval_rows_std": 0.02} for k, a in ari[v].items()},
             "success") for i, v in enumerate((30, 50))]
    result = sweep.select(s, exp_show(base, exps))
    # a: 50 beats 30 by 0.10 > 0.02; b: runs 50 now, 30 is not better; c: 0.01 is within the std
    assert result["by_item"] == {"d": 15, "a": 50, "b": 50}
    assert {b["item"]: [r["baseline"] for r in b["rows"]] for b in result["table"]} == \
        {"a": [True, False], "b": [False, True], "c": [True, False]}
    columns, rows = sweep.table(result)
    assert columns == ["item", "perp 30", "perp 50", "chosen"]
    assert rows[0] == ["a", "0.5000 ± 0.0200 (now)", "0.6000 ± 0.0200", "50"]


def test_applying_a_per_item_choice_rewrites_that_key_only(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text().splitlines()
    sweep.write_param(path, "cluster.tsne_perplexity_by_set", {"text_tfidf": 50, "image_vgg16": 15})
    after = path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1, changed
    assert changed[0][1].startswith("  tsne_perplexity_by_set: {text_tfidf: 50, image_vgg16: 15}")
    assert "# a set's own" in changed[0][1]   # its comment kept
    assert yaml.safe_load(path.read_text())["cluster"]["tsne_perplexity_by_set"] == {"text_tfidf": 50, "image_vgg16": 15}


def test_applying_rewrites_a_block_style_value_too(tmp_path):
    path = tmp_path / "params.yaml"   # as yaml.safe_dump writes it (the integration tests' copies)
    path.write_text("cluster:\n  tsne_perplexity: 10\n  tsne_perplexity_by_set:\n    text_mpnet: 50\n"
                    "    text_bert: 15\n  tsne_metric: cosine\nseed: 42\n")
    before = path.read_text()
    sweep.write_param(path, "cluster.tsne_perplexity_by_set", {"text_mpnet": 50, "text_bert": 15})
    assert path.read_text() == before   # the same value: nothing rewritten
    sweep.write_param(path, "cluster.tsne_perplexity_by_set", {"text_use": 80})
    assert path.read_text() == ("cluster:\n  tsne_perplexity: 10\n  tsne_perplexity_by_set: {text_use: 80}\n"
                                "  tsne_metric: cosine\nseed: 42\n")
    sweep.write_param(path, "cluster.tsne_perplexity_by_set", {})
    assert yaml.safe_load(path.read_text())["cluster"] == {"tsne_perplexity": 10, "tsne_perplexity_by_set": {},
                                                           "tsne_metric": "cosine"}


def test_the_report_shows_each_sweep_result_as_its_table(tmp_path):
    from fkstudy.report import sweeps as report_sweeps
    from fkstudy.report.document import Table, to_markdown

    assert report_sweeps.blocks(report_sweeps.load(tmp_path)) == []   # no sweep yet: no subsection
    result = sweep.select(sweep.parse("s", SINGLE), single_show({1: 0.60, 2: 0.65}, std=0.02))
    result["applied"] = "dvc exp apply s-1: {...}"
    (tmp_path / sweep.OUT_DIR).mkdir(parents=True)
    (tmp_path / sweep.OUT_DIR / "s.json").write_text(json.dumps(result))
    blocks = report_sweeps.blocks(report_sweeps.load(tmp_path))
    tables = [b for b in blocks if isinstance(b, Table)]
    assert [(t.columns, t.rows) for t in tables] == [sweep.table(result)]
    text = to_markdown(blocks, "t")
    assert "Applied: dvc exp apply s-1" in text and "0.6500 ± 0.0200" in text and "baseline commit bbbbbbb" in text


def test_the_report_stage_depends_on_the_sweep_tables():
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]["deps"]
    assert sweep.OUT_DIR in deps and (ROOT / sweep.OUT_DIR).is_dir()   # a new table re-runs the report
    assert not sweep.OUT_DIR.startswith("reports/")   # reports/ is the pipeline's output, wiped by a cold copy
