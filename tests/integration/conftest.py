"""Integration fixtures: a temporary git+DVC copy of this repository on a small real subset."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CSV = "flipkart_com-ecommerce_sample_1050.csv"


def real_data_dir() -> Path:
    for cand in (os.environ.get("FLIPKART_DATA"), ROOT / "data/raw/flipkart", ROOT.parent / "shared/data/flipkart"):
        if cand and (Path(cand) / CSV).exists():
            return Path(cand).resolve()
    if os.environ.get("CI"):
        pytest.fail("real data not found: run scripts/setup.sh (links ../shared/data/flipkart) or set FLIPKART_DATA")
    pytest.skip("real Flipkart data not available")


def make_subset(dest: Path, per_class: int, seed: int = 0) -> Path:
    """per_class real products of each category (always including the products whose photo is missing)."""
    src = real_data_dir()
    df = pd.read_csv(src / CSV, dtype=str, keep_default_na=False)
    df["_cat"] = df["product_category_tree"].str.extract(r'^\["([^>"]+)')[0].str.strip()
    missing = df[~df["image"].map(lambda n: (src / "Images" / n).exists())]
    picked = df.drop(missing.index).groupby("_cat", group_keys=False).apply(
        lambda g: g.sample(n=per_class, random_state=seed))
    subset = pd.concat([picked, missing]).drop(columns="_cat")
    (dest / "Images").mkdir(parents=True)
    subset.to_csv(dest / CSV, index=False)
    for name in subset["image"]:
        if (src / "Images" / name).exists():
            os.symlink(src / "Images" / name, dest / "Images" / name)
    return dest


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def copy_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


SMALL_PARAMS = {
    "data.min_per_class": 5,
    "cluster.n_seeds": 2,
    "cluster.reductions": ["pca", "tsne"],
    "cluster.primary": "tsne",
    "cluster.tsne_perplexity": 10,
    "cluster.pca_components": 20,
    "cluster.tsne_pca_components": 20,
    "pretrained.allow_download": False,  # offline here: skip ~50 s of hub retries before random-init
    "deep_features.vgg16.batch_size": 8,
    "multiseed.n_seeds": 2,
    "train.epochs": 30,
    "train.augment.views": 1,
    "train.fine_tune.epochs": 1,   # fine_tune@vgg16: one end-to-end epoch on the subset's photos
    # every extractor and feature set runs; training on one Keras backbone with real weights, one torch, one
    # random-init (the same code paths as all five), multi-seed on one: ~8 stage processes fewer in CI
    "pipeline.backbones": ["vgg16", "efficientnet_lite2", "mobilenetv3small"],
    "pipeline.multiseed": ["vgg16"],
    # cluster@ on one set of each kind (sparse / fitted / pretrained text, a bag of visual words, the real-weights
    # backbones) rather than all 17: the same code on other files, 8 stage processes fewer here and in
    # test_review's experiment (CI stays under 30 min)
    "pipeline.cluster": ["text_tfidf", "text_word2vec", "text_bert", "text_mpnet", "text_use", "image_sift_bovw",
                         "image_vgg16", "image_efficientnet_lite0", "image_efficientnet_lite2"],
}


def set_params(repo: Path, overrides: dict) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory) -> Path:
    """A git repo copy of this checkout, params pointed at a 10-per-class real subset, nothing run yet."""
    base = tmp_path_factory.mktemp("study")
    data = make_subset(base / "data_subset", per_class=10)
    repo = copy_repo(base / "repo")
    for out in ("metrics", "plots", "reports"):  # outputs must come from this run, not the copied ones
        shutil.rmtree(repo / out, ignore_errors=True)
    (repo / "dvc.lock").unlink(missing_ok=True)
    set_params(repo, {**SMALL_PARAMS, "data.raw_dir": str(data)})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}",
           "FKSTUDY_PARAMS_AUDIT": str(base / "params_audit.jsonl")}  # every params key each stage reads
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], repo)
    os.environ.update(env)
    return repo


@pytest.fixture(scope="session")
def reproduced(small_repo) -> tuple[Path, str]:
    """`dvc repro` of the whole pipeline in small_repo, once per session (shared by every module):
    the repo and dvc's output. Tests that change the workspace work on a copy (see test_workflow)."""
    proc = run(["dvc", "repro"], small_repo)
    return small_repo, proc.stdout + proc.stderr
