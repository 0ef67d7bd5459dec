"""The ``knn`` strategy: a model's nearest earlier neighbours as negatives, vetoed by the graph.

For each anchor, exact search (chunked matrix products, on the GPU when there is one) finds its
``neighbours`` most similar patents among those granted before it, in an embedding store made by
``patentminer embed``. The versioned ``knn`` query picks the positive (a cited patent, as in
citation-cpc) and names the rule that vetoes each candidate: the positive itself, a patent cited by
or citing the anchor, one within two citation hops, or one not granted before the anchor. Vetoed
candidates are dropped (``veto="none"`` keeps all but the positive, for the ablation); of the rest,
those more similar to the anchor than ``margin`` times the positive (NV-Retriever's positive-aware
filter) are dropped too, and the K most similar survivors are the negatives. Every candidate's rule
is counted either way: the share vetoed is how much a model-only miner would have taught wrong.

Example::

    miner = KnnMiner(graph, Embeddings.open(Path("runs/emb")), query, options, pos_mul)
    part = miner.run(batch)      # batch: id, date of some anchors
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from patentminer.cypher.connection import Graph
from patentminer.cypher.registry import Query
from patentminer.errors import ConfigError

if TYPE_CHECKING:
    from patentminer.cypher.mining import MineOptions
    from patentminer.training.embed import Embeddings

RULES = ("positive", "cites", "two_hops", "not_earlier")
COUNTS = ("candidates", *[f"veto_{r}" for r in RULES], "margin")
CORPUS_CHUNK = 65_536


def nearest_earlier(vectors: np.ndarray, rows: np.ndarray, limits: np.ndarray, n: int,
                    chunk: int = CORPUS_CHUNK, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the ``n`` rows of ``vectors`` most similar to each of ``rows``, among the first
    ``limits[q]`` rows only (the patents granted before that anchor), best first, ties by lower row;
    -1 / -inf where fewer exist. Rows are unit length, so the dot product is the cosine."""
    import torch

    from patentminer.training.metrics import chunk_top, ordered

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    queries = torch.from_numpy(np.asarray(vectors[rows], dtype=np.float32)).to(dev)
    lim = torch.from_numpy(limits.astype(np.int64)).to(dev)
    best_s = np.full((len(rows), 0), -np.inf, dtype=np.float32)
    best_i = np.full((len(rows), 0), -1, dtype=np.int64)
    top = int(limits.max()) if len(limits) else 0
    for cs in range(0, top, chunk):
        block = torch.from_numpy(np.asarray(vectors[cs:min(cs + chunk, top)], dtype=np.float32)).to(dev)
        sims = queries @ block.T
        cols = torch.arange(cs, cs + block.shape[0], device=dev)
        sims[cols[None, :] >= lim[:, None]] = -float("inf")
        s, i = chunk_top(sims, min(n, block.shape[0]))
        best_s, best_i = ordered(np.concatenate([best_s, s], axis=1), np.concatenate([best_i, i + cs], axis=1), n)
    out_i = np.full((len(rows), n), -1, dtype=np.int64)
    out_s = np.full((len(rows), n), -np.inf, dtype=np.float32)
    out_i[:, :best_i.shape[1]] = np.where(np.isneginf(best_s), -1, best_i)
    out_s[:, :best_s.shape[1]] = best_s
    return out_i, out_s


class KnnMiner:
    """Mines one batch of anchors at a time (``run``); holds the memory-mapped embeddings."""

    def __init__(self, graph: Graph, embeddings: Embeddings, query: Query, options: MineOptions,
                 pos_mul: int) -> None:
        self.graph, self.emb, self.query, self.options = graph, embeddings, query, options
        self.pos_mul = pos_mul

    def check(self, patents: pl.DataFrame) -> None:
        """The store must cover exactly the graph's dated patents, encoded with this template (and model)."""
        from patentminer.training.embed import patents_sha256

        info, path = self.emb.info, self.emb.path
        want = self.options.embedding_model
        if want is not None and info["model"] != want:
            raise ConfigError(f"--embeddings {path} were made with {info['model']!r}, not {want!r}; run `patentminer "
                              f"embed --model {want} --out DIR` and point --embeddings at it.")
        if info["template"] != self.options.template:
            raise ConfigError(f"--embeddings {path} encode patents as {info['template']!r}, this run's --template is "
                              f"{self.options.template!r}; embed again with the same template.")
        ordered_ids = patents.sort("date", "id")["id"]
        if len(ordered_ids) != len(self.emb.ids) or patents_sha256(ordered_ids) != info["fingerprint"][
                "patents_sha256"]:
            raise ConfigError(f"--embeddings {path} cover another patent set ({len(self.emb.ids):,} patents; the "
                              f"graph has {len(ordered_ids):,}): the graph was imported again since; run `patentminer "
                              f"embed --model {info['model']} --out {path} --overwrite`.")

    def run(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Rows for the part file: anchor_id, positive_id, negative_ids, level ('knn') and the counts."""
        o = self.options
        rows = self.emb.rows(batch["id"])
        days = batch["date"].str.to_date().cast(pl.Int32).to_numpy()
        limits = np.searchsorted(self.emb.days, days, side="left")
        idx, scores = nearest_earlier(self.emb.vectors, rows, limits, o.neighbours)
        cand_ids = [self.emb.ids.gather(r[r >= 0]).to_list() for r in idx]
        found = self.graph.read(self.query.body, {"rows": [{"id": a, "cands": c} for a, c in
                                                           zip(batch["id"].to_list(), cand_ids, strict=True)],
                                                  "pos_mul": self.pos_mul})
        by_anchor = {r["anchor_id"]: r for r in found}
        positives = pl.Series([by_anchor[a]["positive_id"] if a in by_anchor else None for a in batch["id"]],
                              dtype=pl.String)
        pos_rows = self.emb.rows(positives.fill_null(""))
        out: list[dict[str, Any]] = []
        for b, anchor in enumerate(batch["id"].to_list()):
            hit = by_anchor.get(anchor)
            if hit is None:
                continue  # no positive: the anchor cites nothing in the graph
            rule = dict(hit["checked"])
            pos_score = float(np.dot(np.asarray(self.emb.vectors[rows[b]], np.float32),
                                     np.asarray(self.emb.vectors[pos_rows[b]], np.float32)))
            counts = dict.fromkeys(COUNTS, 0)
            negatives: list[str] = []
            for cid, score in zip(cand_ids[b], scores[b].tolist(), strict=False):
                counts["candidates"] += 1
                why = rule.get(cid, "")
                if why:
                    counts[f"veto_{why}"] += 1
                    if why == "positive" or o.veto == "graph":
                        continue
                if score > o.margin * pos_score:
                    counts["margin"] += 1
                    continue
                if len(negatives) < o.negatives:
                    negatives.append(cid)
            out.append({"anchor_id": anchor, "positive_id": hit["positive_id"], "negative_ids": negatives,
                        "level": "knn", **counts})
        schema: dict[str, Any] = {"anchor_id": pl.String, "positive_id": pl.String,
                                  "negative_ids": pl.List(pl.String), "level": pl.String,
                                  **dict.fromkeys(COUNTS, pl.Int64)}
        return pl.DataFrame(out, schema=schema)


def summary(parts: list[Any], embeddings: Embeddings, options: MineOptions) -> dict[str, Any]:
    """What dataset.json records of a knn run: the model, N, the margin, the veto and what each rule removed."""
    totals = dict.fromkeys(COUNTS, 0)
    if parts:
        sums = pl.scan_parquet(parts).select([pl.col(c).sum() for c in COUNTS]).collect().row(0, named=True)
        totals = {c: int(sums[c] or 0) for c in COUNTS}
    n = totals["candidates"] or 1
    return {
        "embeddings": str(embeddings.path), "model": embeddings.info["model"],
        "model_sha256": embeddings.info["model_sha256"], "neighbours": options.neighbours, "margin": options.margin,
        "veto": options.veto, "candidates": totals["candidates"],
        "flagged": {r: totals[f"veto_{r}"] for r in RULES},
        "flagged_share": {r: round(totals[f"veto_{r}"] / n, 4) for r in RULES},
        "removed_by_margin": totals["margin"],
    }
