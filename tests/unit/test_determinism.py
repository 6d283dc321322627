"""Same seed -> identical arrays, within a process and across processes (each stage is a new process
with its own random PYTHONHASHSEED), for every seeded step of the pipeline: Word2Vec, the BoVW codebook,
a t-SNE + KMeans clustering draw. And no wall-clock figure ends up in a feature file's meta."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fkstudy.evaluate import cluster as cl
from fkstudy.evaluate.params import ClusterParams
from fkstudy.image import classical as C
from fkstudy.image import deep
from fkstudy.registry import Context
from fkstudy.text import features as F
from fkstudy.text.registry import Word2VecParams

SRC = Path(__file__).resolve().parents[2] / "src"
W2V = Word2VecParams(field="name", input="lemmas", vector_size=16, window=2, min_count=1, epochs=10, sg=1,
                     pooling="mean")
CLUSTER = ClusterParams(reductions=["tsne"], primary="tsne", primary_by_set={}, tsne_perplexity_by_set={},
                        pca_components=5,
                        lsa_components=5, variance_components=5, tsne_perplexity=5.0,
                        tsne_pca_components=0, tsne_metric="euclidean", tsne_init="random", normalize="l2",
                        n_seeds=1, kmeans_n_init=2, tsne_max_samples=0, silhouette_max_samples=0)


def docs() -> list[str]:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    return [" ".join(rng.choice(words, size=8)) for _ in range(30)]


def ctx(seed: int, timings: dict | None = None) -> Context:
    """Every one of the 30 documents may be fitted on (as with text_features.fit_on: all)."""
    return Context(ids=[str(i) for i in range(30)], seed=seed, timings={} if timings is None else timings)


def descriptors(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(5, 30)), 128)).astype(np.float32) for _ in range(12)]


def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 15)
    return (rng.normal(size=(45, 10)) + labels[:, None] * 3).astype(np.float32), labels


def seeded_arrays(seed: int) -> dict[str, np.ndarray]:
    """Every seeded step on small generated data, on one thread (stages pin threads with threadpool_limits
    too; without a limit, spinning OpenMP threads made this 45-point t-SNE take 25 s on a loaded machine)."""
    from threadpoolctl import threadpool_limits

    X, labels = blobs()
    with threadpool_limits(1):
        draw = cl.evaluate(X, labels, CLUSTER, seed=seed, n_jobs=1)[0]
        return {"word2vec": F.word2vec(docs(), W2V, ctx(seed))[0],
                "codebook": C.fit_codebook(descriptors(), k=4, seed=seed, max_descriptors=100).centers,
                "tsne": draw.embedding, "kmeans": draw.clusters}


def test_same_seed_same_arrays_in_one_process():
    a, b, other = seeded_arrays(3), seeded_arrays(3), seeded_arrays(4)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for name in ("word2vec", "codebook", "tsne"):  # the seed is used (KMeans labels may coincide)
        assert not np.array_equal(a[name], other[name]), name


CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{src!r}, {tests!r}]
    import numpy as np
    from test_determinism import seeded_arrays
    np.savez(sys.argv[1], **seeded_arrays(3))
""")


def test_same_seed_same_arrays_across_processes_and_hash_seeds(tmp_path):
    """Word2Vec hashes words to seed their vectors: a str hash that changed with PYTHONHASHSEED would
    make every stage run differ (fkstudy.text.features uses a stable crc32 instead)."""
    code = CHILD.format(src=str(SRC), tests=str(Path(__file__).parent))
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") == "4242" else "4242"  # not this process's
    out = tmp_path / "child.npz"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child, here = np.load(out, allow_pickle=False), seeded_arrays(3)
    for name in here:
        np.testing.assert_array_equal(child[name], here[name], err_msg=name)


def test_word2vec_info_has_no_wall_clock():
    timings: dict = {}
    _, info = F.word2vec(docs(), W2V, ctx(0, timings))
    assert timings["train_seconds"] >= 0
    assert not [k for k in info if "second" in k]


def test_deep_record_has_no_wall_clock():
    """The extractor record becomes feature meta and metrics: timings go to the sink only."""
    class Model:
        def count_params(self):
            return 0

    images = np.zeros((3, 8, 8, 3), np.uint8)
    timings: dict = {}
    X, rec = deep.timed_extract(images, 2, lambda: (Model(), {"weights": "none"}),
                                lambda model: lambda b: b.reshape(len(b), -1)[:, :4], timings)
    assert X.shape == (3, 4) and rec["weights"] == "none"
    assert not [k for k in rec if "second" in k]
    assert {"load_seconds", "extract_seconds", "images_per_second"} <= set(timings)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_classical_features_do_not_depend_on_n_jobs(n_jobs):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(4, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(C.classical_features(images, n_jobs=n_jobs), C.classical_features(images, n_jobs=1))
