"""Retrieval and classification metrics, computed directly from embeddings.

The IR metrics are those on the reference model cards (accuracy@k, precision@k, recall@k,
NDCG@10, MRR@10, MAP@100), defined as sentence-transformers' InformationRetrievalEvaluator
defines them, with binary relevance.

Example::

    scores = ir_metrics(q_emb, c_emb, q_ids, c_ids, {"q1": {"c3"}})
    scores["mrr@10"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

KS = (1, 3, 5, 10)


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12))


def rankings(queries: np.ndarray, corpus: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` most cosine-similar corpus rows per query, best first (ties by index)."""
    sims = _normalise(queries) @ _normalise(corpus).T
    top = min(top, corpus.shape[0])
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.asarray(order[:, :top])


def ir_metrics(queries: np.ndarray, corpus: np.ndarray, query_ids: Sequence[str], corpus_ids: Sequence[str],
               relevant: dict[str, set[str]]) -> dict[str, float]:
    """Mean IR metrics over the queries that have at least one relevant document."""
    ranked = rankings(queries, corpus, 100)
    acc = {k: 0.0 for k in KS}
    prec = {k: 0.0 for k in KS}
    rec = {k: 0.0 for k in KS}
    mrr = ndcg = map100 = 0.0
    n = 0
    for qi, qid in enumerate(query_ids):
        rel = relevant.get(qid, set())
        if not rel:
            continue
        n += 1
        hits = [corpus_ids[j] in rel for j in ranked[qi]]
        for k in KS:
            found = sum(hits[:k])
            acc[k] += 1.0 if found else 0.0
            prec[k] += found / k
            rec[k] += found / len(rel)
        for rank, hit in enumerate(hits[:10]):
            if hit:
                mrr += 1.0 / (rank + 1)
                break
        dcg = sum(1.0 / math.log2(r + 2) for r, hit in enumerate(hits[:10]) if hit)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), 10)))
        ndcg += dcg / idcg
        found = 0
        ap = 0.0
        for rank, hit in enumerate(hits[:100]):
            if hit:
                found += 1
                ap += found / (rank + 1)
        map100 += ap / min(len(rel), 100)
    if n == 0:
        return {}
    out = {f"accuracy@{k}": acc[k] / n for k in KS}
    out |= {f"precision@{k}": prec[k] / n for k in KS}
    out |= {f"recall@{k}": rec[k] / n for k in KS}
    out |= {"ndcg@10": ndcg / n, "mrr@10": mrr / n, "map@100": map100 / n, "queries": float(n)}
    return out


def knn_accuracy(emb: np.ndarray, labels: Sequence[str], k: int = 5, folds: int = 5, seed: int = 0) -> float:
    """k-nearest-neighbour classification accuracy (cosine, majority vote), k-fold cross-validated."""
    n = len(labels)
    if n < folds * 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    fold = rng.permutation(n) % folds
    x = _normalise(emb)
    y = np.asarray(labels)
    correct = 0
    for f in range(folds):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        sims = x[test] @ x[train].T
        nn = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        for row, t in zip(nn, test, strict=True):
            votes: dict[str, int] = {}
            for j in row:
                votes[y[train[j]]] = votes.get(y[train[j]], 0) + 1
            best = max(sorted(votes), key=lambda lab: votes[lab])
            correct += int(best == y[t])
    return correct / n


def scatter_png(emb: np.ndarray, labels: Sequence[str], path: str, title: str) -> None:
    """2-D PCA scatter of embeddings coloured by label (the CPC section), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = emb - emb.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    for lab in sorted(set(labels)):
        m = np.asarray([lab == v for v in labels])
        ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, label=lab)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(title="CPC section", fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
