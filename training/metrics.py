"""Retrieval and classification metrics from embeddings, computed in chunks.

Scores are never held for all queries × corpus at once: queries go through in chunks, each against
the corpus in chunks, and only every query's running top ``k`` (100) is kept, so memory depends on
the chunk sizes (``query_chunk`` × ``corpus_chunk`` floats), not on the benchmark's size. The order is
exact: best score first, equal scores by corpus order, the same as a stable sort of the dense matrix
(a test compares the two). The IR metrics are those on the reference model cards (accuracy@k,
precision@k, recall@k, NDCG@10, MRR@10, MAP@100), defined as sentence-transformers'
InformationRetrievalEvaluator defines them, with binary relevance; the trainer's dev evaluation uses
these same functions.

Example::

    scores = ir_metrics(q_emb, c_emb, q_ids, c_ids, {"q1": {"c3"}})
    scores["mrr@10"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

KS = (1, 3, 5, 10)
TOP = 100
QUERY_CHUNK = 1024
CORPUS_CHUNK = 65_536


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (cosine similarity becomes a dot product)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def ordered(scores: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best (score desc, index asc) of the given candidates."""
    order = np.lexsort((index, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(index, order, axis=1)


def chunk_top(sims: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top ``k`` of each row of a score block (a torch tensor), ties by lower column."""
    import torch

    n = sims.shape[1]
    if k >= n:
        vals, idx = torch.sort(sims, dim=1, descending=True, stable=True)
        return ordered(vals.cpu().numpy(), idx.cpu().numpy(), k)
    vals, idx = torch.topk(sims, k + 1, dim=1, sorted=True)
    v, i = vals.cpu().numpy(), idx.cpu().numpy()
    # topk may cut a run of equal scores anywhere; where a tie straddles the k-th place, sort that row stably.
    for r in np.flatnonzero(v[:, k - 1] == v[:, k]).tolist():
        rv, ri = torch.sort(sims[r], descending=True, stable=True)
        v[r], i[r] = rv[:k + 1].cpu().numpy(), ri[:k + 1].cpu().numpy()
    return ordered(v[:, :k], i[:, :k], k)


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int = TOP, exclude: np.ndarray | None = None,
          query_chunk: int = QUERY_CHUNK, corpus_chunk: int = CORPUS_CHUNK,
          device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the ``k`` most cosine-similar corpus rows per query, best first.

    ``exclude[q]`` is a corpus row query ``q`` must not retrieve (itself, where queries are corpus
    patents too) or -1. Rows with fewer than ``k`` candidates end in index -1 and score -inf.
    """
    import torch

    nq, nc = queries.shape[0], corpus.shape[0]
    k_out = k
    k = min(k, nc)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    c = torch.from_numpy(normalise(corpus)).to(dev)
    qn = normalise(queries)
    out_i = np.full((nq, k_out), -1, dtype=np.int64)
    out_s = np.full((nq, k_out), -np.inf, dtype=np.float32)
    for qs in range(0, nq, query_chunk):
        q = torch.from_numpy(qn[qs:qs + query_chunk]).to(dev)
        best_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
        best_i = np.full((q.shape[0], 0), -1, dtype=np.int64)
        for cs in range(0, nc, corpus_chunk):
            sims = q @ c[cs:cs + corpus_chunk].T
            if exclude is not None:
                ex = exclude[qs:qs + q.shape[0]] - cs
                rows = np.flatnonzero((ex >= 0) & (ex < sims.shape[1]))
                if rows.size:
                    sims[torch.from_numpy(rows).to(dev), torch.from_numpy(ex[rows]).to(dev)] = -math.inf
            s, i = chunk_top(sims, min(k, sims.shape[1]))
            best_s, best_i = ordered(np.concatenate([best_s, s], axis=1), np.concatenate([best_i, i + cs], axis=1),
                                      k)
        best_i = np.where(np.isneginf(best_s), -1, best_i)
        out_i[qs:qs + q.shape[0], :k] = best_i
        out_s[qs:qs + q.shape[0], :k] = best_s
    return out_i, out_s


def score_rankings(ranked: np.ndarray, query_ids: Sequence[str], corpus_ids: Sequence[str],
                   relevant: dict[str, set[str]]) -> dict[str, float]:
    """Mean IR metrics of ranked corpus rows (``top_k``'s indices) over the queries with a relevant document.

    Returns ``{}`` when no query has one: a benchmark without relevance judgements has no score.
    """
    acc = dict.fromkeys(KS, 0.0)
    prec = dict.fromkeys(KS, 0.0)
    rec = dict.fromkeys(KS, 0.0)
    mrr = ndcg = map100 = 0.0
    n = 0
    for qi, qid in enumerate(query_ids):
        rel = relevant.get(qid, set())
        if not rel:
            continue
        n += 1
        hits = [j >= 0 and corpus_ids[j] in rel for j in ranked[qi].tolist()]
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
        for rank, hit in enumerate(hits[:TOP]):
            if hit:
                found += 1
                ap += found / (rank + 1)
        map100 += ap / min(len(rel), TOP)
    if n == 0:
        return {}
    out = {f"accuracy@{k}": acc[k] / n for k in KS}
    out |= {f"precision@{k}": prec[k] / n for k in KS}
    out |= {f"recall@{k}": rec[k] / n for k in KS}
    out |= {"ndcg@10": ndcg / n, "mrr@10": mrr / n, "map@100": map100 / n, "queries": float(n)}
    return out


def ir_metrics(queries: np.ndarray, corpus: np.ndarray, query_ids: Sequence[str], corpus_ids: Sequence[str],
               relevant: dict[str, set[str]], **chunks: Any) -> dict[str, float]:
    """Mean IR metrics over the queries that have at least one relevant document (``{}`` when none has).

    A query never retrieves itself: where a query id is also a corpus id, that corpus row is left out
    of the query's ranking. ``chunks`` go to :func:`top_k` (``query_chunk``, ``corpus_chunk``, ``device``).
    """
    place = {cid: j for j, cid in enumerate(corpus_ids)}
    exclude = np.array([place.get(q, -1) for q in query_ids], dtype=np.int64)
    ranked, _ = top_k(queries, corpus, TOP, exclude=exclude, **chunks)
    return score_rankings(ranked, query_ids, corpus_ids, relevant)


def knn_accuracy(emb: np.ndarray, labels: Sequence[str], k: int = 5, folds: int = 5, seed: int = 0,
                 **chunks: Any) -> float | None:
    """k-nearest-neighbour classification accuracy (cosine, majority vote, ties to the smallest label),
    ``folds``-fold cross-validated, neighbours found in chunks. None with fewer than ``2 * folds`` items."""
    n = len(labels)
    if n < folds * 2:
        return None
    fold = np.random.default_rng(seed).permutation(n) % folds
    names, codes = np.unique(np.asarray(labels), return_inverse=True)
    correct = 0
    for f in range(folds):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        nn, _ = top_k(emb[test], emb[train], k, **chunks)
        votes = codes[train[nn]]  # (len(test), k); each row's most frequent code, the lowest on ties
        counts = np.apply_along_axis(np.bincount, 1, votes, minlength=len(names))
        correct += int((counts.argmax(axis=1) == codes[test]).sum())
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
    lab = np.asarray(labels)
    for name in sorted(set(labels)):
        m = lab == name
        ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, label=name)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(title="CPC section", fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
