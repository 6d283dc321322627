"""Bootstrap intervals of classification metrics from per-product predictions (vectorised: each resample is a
confusion matrix, so thousands of resamples cost milliseconds), and McNemar's test for two classifiers
scored on the same products. Used by the report (intervals of every test metric), the fusion stage
(fusion vs the best single modality) and `python -m fkstudy review` (noise bands)."""
from __future__ import annotations

import numpy as np
from scipy import stats

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
CHUNK = 250  # resamples scored at once (bounds memory for large test sets)


def scores_of_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of a stack of confusion matrices counts[b, actual, predicted] (one per resample)."""
    counts = counts.astype(float)
    n = counts.sum(axis=(1, 2))
    tp = np.diagonal(counts, axis1=1, axis2=2)
    support, predicted = counts.sum(2), counts.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
        weighted = (f1 * support).sum(1) / support.sum(1)

        def pairs(x):
            return x * (x - 1) / 2

        index = pairs(counts).sum(axis=(1, 2))
        rows, cols, total = pairs(support).sum(1), pairs(predicted).sum(1), pairs(n)
        expected = rows * cols / total
        denominator = (rows + cols) / 2 - expected
        ari = np.where(denominator != 0, (index - expected) / denominator, 1.0)
    return {"accuracy": tp.sum(1) / n, "macro_f1": f1.mean(1), "weighted_f1": weighted, "ari": ari,
            "precision": precision, "recall": recall, "f1": f1}


def _counts(a: np.ndarray, p: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    b = idx.shape[0]
    flat = (np.arange(b)[:, None] * k * k + a[idx] * k + p[idx]).ravel()
    return np.bincount(flat, minlength=b * k * k).reshape(b, k, k)


def intervals(actual, predicted, resamples: int = RESAMPLES, seed: int = SEED,
              level: float = LEVEL) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The classes (sorted) and, per statistic, (point, low, high): the score of all products and the
    percentile interval over `resamples` resamples of the products (with replacement, seeded).
    Per-class statistics are arrays over the classes."""
    if len(actual) != len(predicted) or not len(actual):
        raise ValueError(f"need as many predictions as labels, at least one: {len(actual)} vs {len(predicted)}")
    labels = sorted(set(actual) | set(predicted))
    code = {c: i for i, c in enumerate(labels)}
    a = np.array([code[x] for x in actual])
    p = np.array([code[x] for x in predicted])
    k, n = len(labels), len(a)
    point = scores_of_counts(_counts(a, p, k, np.arange(n)[None, :]))
    rng = np.random.default_rng(seed)
    draws: dict[str, list] = {s: [] for s in point}
    for start in range(0, resamples, CHUNK):
        idx = rng.integers(0, n, size=(min(CHUNK, resamples - start), n))
        for s, v in scores_of_counts(_counts(a, p, k, idx)).items():
            draws[s].append(v)
    tail = (1 - level) / 2 * 100
    out = {}
    for s, chunks in draws.items():
        stacked = np.concatenate(chunks)
        low, high = np.percentile(stacked, [tail, 100 - tail], axis=0)
        out[s] = (point[s][0], low, high)
    return labels, out


def mcnemar(y, pred_a, pred_b) -> dict:
    """McNemar's exact test of "a and b are equally accurate" on the same products: b01 = a right and b
    wrong, b10 = a wrong and b right; two-sided binomial p-value on the discordant pairs."""
    y, pred_a, pred_b = np.asarray(y), np.asarray(pred_a), np.asarray(pred_b)
    a_ok, b_ok = pred_a == y, pred_b == y
    only_a, only_b = int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(min(only_a, only_b), n, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": min(p, 1.0)}
