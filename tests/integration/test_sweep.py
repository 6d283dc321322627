"""`fkstudy sweep` end to end with real DVC: each grid point a queued experiment run by `dvc queue start`, the
choice read back from `dvc exp show --json`, applied, and what `dvc status` then asks to re-run.

In a committed copy of the reproduced subset repository (test_workflow's `wf_repo`), clustering two sets:
a per-item sweep (t-SNE perplexity per set, written to cluster.tsne_perplexity_by_set) and a one-choice sweep
(TF-IDF min_df, applied with `dvc exp apply`)."""
from __future__ import annotations

import json
import sys

import pytest
import yaml

from .conftest import run, set_params, stop_workers
from .test_workflow import GIT, experiments, ran_stages, wf_repo  # noqa: F401  (wf_repo: a fixture)

pytestmark = pytest.mark.integration
SETS = ["text_tfidf", "image_sift_bovw"]
SWEEPS = {
    "perp": {"grid": {"cluster.tsne_perplexity": [10, 5]}, "fixed": {"cluster.tsne_perplexity_by_set": {}},
             "per": "pipeline.cluster", "write": "cluster.tsne_perplexity_by_set", "targets": ["cluster"],
             "select": {"metric": "metrics/cluster/{item}.json:ari_trainval_rows",
                        "std": "metrics/cluster/{item}.json:ari_trainval_rows_std"}},
    "mindf": {"grid": {"text_features.tfidf.min_df": [1, 2]}, "targets": ["cluster@text_tfidf"],
              "select": {"metric": "metrics/cluster/text_tfidf.json:ari_trainval_rows",
                         "std": "metrics/cluster/text_tfidf.json:ari_trainval_rows_std"}},
}


def fkstudy(repo, *args, check=True):
    return run([sys.executable, "-m", "fkstudy", *args], repo, check=check)


@pytest.fixture(scope="module")
def swept(wf_repo):  # noqa: F811
    """Both sweeps run (2 experiments each, one queue worker): {name: run output}."""
    set_params(wf_repo, {"pipeline.cluster": SETS, "cluster.tsne_perplexity": 10})
    (wf_repo / "sweeps.yaml").write_text(yaml.safe_dump(SWEEPS, sort_keys=False))
    run([*GIT, "commit", "-qam", "two cluster sets, the test's sweeps"], wf_repo)
    try:
        return {name: fkstudy(wf_repo, "sweep", "run", name).stdout for name in SWEEPS}
    finally:
        stop_workers(wf_repo)   # `sweep run` returns when its experiments are done, not when the workers exit


def shown(repo) -> dict:
    return experiments(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout))


def test_each_point_ran_as_a_queued_experiment_of_its_targets_only(wf_repo, swept):  # noqa: F811
    exps = shown(wf_repo)
    for name, spec in SWEEPS.items():
        for i, value in enumerate(next(iter(spec["grid"].values()))):
            exp = exps[f"{name}-{i}"]
            params = exp["params"]["params.yaml"]
            key = next(iter(spec["grid"]))
            node = params
            for part in key.split("."):
                node = node[part]
            assert node == value, (name, i, node)
            logs = run(["dvc", "queue", "logs", f"{name}-{i}"], wf_repo, check=False).stdout
            assert ran_stages(logs) <= {f"cluster@{s}" for s in SETS} | {"text_features@tfidf"}, logs[-3000:]
        assert f"sweep {name}: 2 experiments" in swept[name]


def test_per_item_choice_is_written_and_dvc_status_follows_it(wf_repo, swept):  # noqa: F811
    before = (wf_repo / "params.yaml").read_text()
    out = fkstudy(wf_repo, "sweep", "select", "perp", "--apply").stdout
    result = json.loads((wf_repo / "sweeps/perp.json").read_text())
    exps = shown(wf_repo)
    for block in result["table"]:   # every figure is the experiment's own metric
        for row in block["rows"]:
            metrics = exps[row["exp"]]["metrics"][f"metrics/cluster/{block['item']}.json"]
            assert (row["mean"], row["std"]) == (metrics["ari_trainval_rows"], metrics["ari_trainval_rows_std"])
            assert "ari_test_rows" not in row
        base, best = (next(r for r in block["rows"] if r[k]) for k in ("baseline", "chosen"))
        moved = best is not base
        assert moved == (best["mean"] - base["mean"] > max(base["std"], best["std"]))
    assert [b["item"] for b in result["table"]] == SETS
    chosen = {b["item"]: next(r for r in b["rows"] if r["chosen"])["params"]["cluster.tsne_perplexity"]
              for b in result["table"]}
    own = yaml.safe_load(before)["cluster"]["tsne_perplexity_by_set"]   # text_mpnet's, a set not swept here: kept
    assert result["by_item"] == {**{k: v for k, v in own.items() if k not in SETS},
                                 **{s: v for s, v in chosen.items() if v != 10}}
    after = (wf_repo / "params.yaml").read_text()
    assert yaml.safe_load(after)["cluster"]["tsne_perplexity_by_set"] == result["by_item"]
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    moved = result["by_item"] != own
    assert len(changed) == moved and all("tsne_perplexity_by_set:" in c for c in changed), changed
    assert "| item | tsne_perplexity 10 | tsne_perplexity 5 | chosen |" in out
    stale = {line.strip().rstrip(":") for line in run(["dvc", "status"], wf_repo).stdout.splitlines()
             if line.strip().startswith("cluster@")}
    # the cluster stages read the `cluster` section whole: a new map re-runs every one of them, none otherwise
    assert stale == ({f"cluster@{s}" for s in SETS} if moved else set()), (stale, result["by_item"])
    run(["git", "checkout", "params.yaml"], wf_repo)


def test_one_choice_is_applied_with_dvc_exp_apply(wf_repo, swept):  # noqa: F811
    out = fkstudy(wf_repo, "sweep", "select", "mindf", "--apply").stdout
    result = json.loads((wf_repo / "sweeps/mindf.json").read_text())
    chosen = result["chosen"]["mindf"]
    min_df = yaml.safe_load((wf_repo / "params.yaml").read_text())["text_features"]["tfidf"]["min_df"]
    metrics = json.loads((wf_repo / "metrics/cluster/text_tfidf.json").read_text())
    exp = shown(wf_repo)[chosen["exp"]]
    if chosen["changed"]:   # the workspace is the experiment's: its params and the metrics it produced
        assert f"dvc exp apply {chosen['exp']}" in out
        assert min_df == 2 and metrics == exp["metrics"]["metrics/cluster/text_tfidf.json"]
    else:
        assert "the baseline stays" in out and min_df == 1
        assert run(["git", "status", "--porcelain", "params.yaml", "metrics"], wf_repo).stdout.strip() == ""
    assert result["applied"] in out
