"""A temporary copy of this checkout on the real data or a real subset: what benches and the integration
fixtures (tests/integration/conftest.py) both set up.

    from _repo import copy_repo, set_params            # a bench (bench/ is its sys.path[0])
    from bench._repo import copy_repo, set_params      # the tests (the checkout's root is on sys.path)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
CSV = "flipkart_com-ecommerce_sample_1050.csv"

# The integration fixture's params: a 10-per-class subset runs every code path in minutes. A bench on a
# subset uses them too (t-SNE's default perplexity needs more rows than a subset has).
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
    "fine_tune_text.epochs": 2,    # fine_tune_text@bert: two epochs of 84 examples (42 products x 2 views)
    # fusion re-runs in most workflow tests (the param they sweep, the experiment they queue): one CV repeat and a
    # 3-point C grid for its heads, one CV repeat for text_classifier — the same code paths (both targets, every
    # candidate, calibration on out-of-fold probabilities), half the fits
    "fusion.n_repeats": 1,
    "fusion.head.C": [0.1, 1.0, 10.0],
    "text_classifier.n_repeats": 1,
    # every extractor runs, the optional download-only ones too (random-init here: their code paths stay covered);
    # training on one Keras backbone with real weights, one torch, one random-init (the same code paths as all
    # five), multi-seed on one: ~8 stage processes fewer in CI
    "pipeline.deep": ["vgg16", "efficientnet_lite0", "efficientnet_lite2", "efficientnetb0", "mobilenetv3small", "clip"],
    "pipeline.backbones": ["vgg16", "efficientnet_lite2", "mobilenetv3small"],
    "pipeline.multiseed": ["vgg16"],
    # cluster@ on one set of each kind (sparse / fitted / pretrained text, a bag of visual words, the real-weights
    # backbones) rather than all 17: the same code on other files, 8 stage processes fewer here and in
    # test_review's experiment (CI stays under 30 min)
    "pipeline.cluster": ["text_tfidf", "text_word2vec", "text_bert", "text_mpnet", "text_use", "image_sift_bovw",
                         "image_vgg16", "image_efficientnet_lite0", "image_efficientnet_lite2"],
}


class NoRealData(FileNotFoundError):
    """The real Flipkart sample is nowhere this checkout looks."""


def real_data_dir() -> Path:
    """The real data: $FLIPKART_DATA, else data/raw/flipkart, else ../shared/data/flipkart."""
    for cand in (os.environ.get("FLIPKART_DATA"), ROOT / "data/raw/flipkart", ROOT.parent / "shared/data/flipkart"):
        if cand and (Path(cand) / CSV).exists():
            return Path(cand).resolve()
    raise NoRealData(f"real data not found ({CSV}): run scripts/setup.sh (links ../shared/data/flipkart) "
                     "or set FLIPKART_DATA")


def make_subset(dest: Path, per_class: int, seed: int = 0, src: Path | None = None) -> Path:
    """per_class real products of each category (always including the products whose photo is missing)."""
    src = src or real_data_dir()
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


def products_csv(dest: Path, copies: int = 1, src: Path | None = None, columns=("id", "name", "description", "image"),
                 per_class: int = 0, seed: int = 0) -> Path:
    """The real catalogue (or a per_class subset) as a products CSV for `predict --input` and the catalogue jobs,
    replicated `copies` times: copy k > 0 of a product has id <uniq_id>-r<k> and the same texts and photo (an
    absolute path; a product whose photo is missing keeps its missing path, a per-row error). A subset keeps
    every product whose photo is missing. `columns`: e.g.
    ("id", "name") for a names-only catalogue. Written to dest (a file path); returns it."""
    src = src or real_data_dir()
    real = pd.read_csv(src / CSV, dtype=str, keep_default_na=False)
    if per_class:  # a per_class sample of each category, plus every product whose photo is missing
        missing = ~real["image"].map(lambda n: (src / "Images" / n).exists())
        cat = real["product_category_tree"].str.extract(r'^\["([^>"]+)')[0].str.strip()
        picked = real[~missing].groupby(cat[~missing], group_keys=False).apply(
            lambda g: g.sample(n=min(per_class, len(g)), random_state=seed))
        real = pd.concat([picked, real[missing]])
    base = pd.DataFrame({"id": real["uniq_id"], "name": real["product_name"], "description": real["description"],
                         "image": [str(src / "Images" / n) for n in real["image"]]})
    frames = [base.assign(id=base["id"] + (f"-r{k}" if k else "")) for k in range(copies)]
    out = pd.concat(frames, ignore_index=True)[list(columns)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(dest, index=False)
    return dest


def write_weights_records(repo: Path, representations: list[tuple[str, str]]) -> None:
    """The weights records (data/pretrained/<modality>/<name>.json) the `pretrained` stage writes, for these
    (modality, name) only, written by repo's own code and params: a stage depending on one can run with
    `dvc repro --single-item` without that stage (which converts VGG16 and joins mpnet, ~45 s, for nothing)."""
    code = ("import sys; sys.path.insert(0, 'src')\n"
            "from fkstudy import files, paths, provenance\n"
            "from fkstudy.image.registry import IMAGE\nfrom fkstudy.params import load_params\n"
            "from fkstudy.text.registry import TEXT\n"
            "p = load_params('params.yaml', sections={'deep_features', 'pretrained'})\n"
            "for modality, name in %r:\n"
            "    entry = (TEXT if modality == 'text' else IMAGE)[name]\n"
            "    section = getattr(p.deep_features, name) if modality == 'image' else None\n"
            "    files.write_json(paths.weights_record(modality, name),\n"
            "                     provenance.record(modality, entry, p.pretrained.dir, section))\n") % (representations,)
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, capture_output=True, text=True)


def copy_repo(dest: Path) -> Path:
    """The checkout's files (tracked, and untracked ones git does not ignore) copied to dest."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def set_params(repo: Path, overrides: dict) -> None:
    """Dotted keys of repo/params.yaml set to new values ("cluster.n_seeds": 2)."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def git_commit_all(repo: Path) -> None:
    """repo becomes a git repository with every file committed (DVC and the stages' provenance want one)."""
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)


OUTPUT_DIRS = ("data/interim", "data/features", "data/pretrained", "weights", "models")


def copy_on_outputs(dest: Path, source: Path = ROOT, dirs: tuple[str, ...] = OUTPUT_DIRS) -> Path:
    """A git copy of the checkout (copy_repo) holding source's params.yaml and dvc.lock, its DVC outputs `dirs`
    (hard links) and its raw data (data.raw_dir made absolute), so a stage runs there on what source's pipeline
    made, without its upstream and without touching source."""
    repo = copy_repo(dest)
    for name in ("params.yaml", "dvc.lock"):
        if (source / name).is_file():
            shutil.copy2(source / name, repo / name)
    for rel in dirs:
        if (source / rel).is_dir():
            link_tree(source / rel, repo / rel)
    raw = Path(yaml.safe_load((repo / "params.yaml").read_text())["data"]["raw_dir"])
    set_params(repo, {"data.raw_dir": str(raw if raw.is_absolute() else (source / raw).resolve())})
    git_commit_all(repo)
    return repo


def link_tree(src: Path, dest: Path) -> None:
    """A copy of the directory src made of hard links where possible (a stage replaces its outputs by an
    atomic rename, never writes into them, so a hard link is safe)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def pipeline_order(repo: Path, targets: list[str] | tuple = ()) -> list[str]:
    """Every stage of repo's pipeline (or of the targets and their upstream) in the order `dvc repro` runs
    them (a forced dry run)."""
    out = subprocess.run(["dvc", "repro", "--dry", "-f", *targets], cwd=repo, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"dvc repro --dry failed in {repo}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return re.findall(r"Running stage '([^']+)'", out.stdout)
