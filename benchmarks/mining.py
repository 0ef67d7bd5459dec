"""Mining benchmark on the configured graph (managed server or NEO4J_URI).

Measures, in one run on the same graph:
- our miner (citation-cpc, K=3) on n and 2n anchors: anchors/s and the 2n/n time ratio (linearity);
- the PatentCL pattern: anchors paged with SKIP/LIMIT, one query per page, a cited patent sharing a CPC
  subclass as positive and the first other patent as "negative"; pages are timed at offsets spread over
  the whole Patent table, as a full run would visit them;
- the same paging with our work: citation-cpc's released query (hard negatives and guard included) with
  its ``UNWIND $ids`` head replaced by PatentCL's ``SKIP/LIMIT`` page, against the same query sent the
  same page's anchor ids, one session each: what the paging pattern itself costs or saves when the
  anchors and the work per anchor are equal.

    .venv/bin/patentminer import data/import-1m --overwrite     # a >= 1M patent graph
    .venv/bin/python benchmarks/mining.py --anchors 20000
    .venv/bin/python benchmarks/mining.py --anchors 500 --warmup 0 --patentcl-pages 0 \
        --strategy cpc-distance@v1:subclass --strategy cpc-distance@v2:subclass
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from patentminer.cypher.connection import Graph
from patentminer.cypher.mining import MineOptions, mine, multiplier
from patentminer.cypher.registry import Registry

PATENTCL_PAGE = """
MATCH (anchor:Patent)
WITH anchor SKIP $skip LIMIT $limit
CALL (anchor) {
  MATCH (anchor)-[:CITES]->(pos:Patent)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)
        -[:PART_OF]->(sc:CPCSubclass)
  WHERE EXISTS { (anchor)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(sc) }
  RETURN pos LIMIT 1
}
CALL (anchor, pos) {
  MATCH (other:Patent)
  WHERE other <> anchor AND other <> pos AND NOT (anchor)-[:CITES]->(other)
  RETURN other LIMIT 1
}
RETURN anchor.id AS anchor, anchor.title AS at, anchor.abstract AS aa, pos.id AS positive, pos.title AS pt,
       pos.abstract AS pa, other.id AS negative, other.title AS nt, other.abstract AS na
"""


def run_ours(graph: Graph, n: int, workers: int, strategy: str = "citation-cpc",
             batch_size: int = 500, seed: int = 1) -> dict[str, Any]:
    """``strategy`` is NAME[@vN][:LEVEL], the level for cpc-distance."""
    ref, _, level = strategy.partition(":")
    out = Path(tempfile.mkdtemp(prefix="bench-mine-"))
    try:
        info = mine(graph, out, MineOptions(strategy=ref, level=level or "subgroup", negatives=3, seed=seed,
                                            limit_anchors=n, workers=workers, eval_queries=100, corpus_size=1000,
                                            heldout_size=100, batch_size=batch_size))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    t = info["timings_s"]
    return {"strategy": info["query"]["ref"] + (f":{level}" if level else ""),
            "anchors": n, "mined": info["anchors"]["mined"], "mine_s": t["mine"] + t.get("order", 0.0),
            "total_s": t["total"], "anchors_per_s": round(n / (t["mine"] + t.get("order", 0.0)), 1)}


def run_patentcl(graph: Graph, page: int, pages: int) -> dict[str, Any]:
    total = graph.count("MATCH (p:Patent) RETURN count(p) AS c")
    offsets = [int(total * i / pages) for i in range(pages)]
    seconds = 0.0
    rows = 0
    for skip in offsets:
        t0 = time.perf_counter()
        rows += len(graph.read(PATENTCL_PAGE, {"skip": skip, "limit": page}))
        seconds += time.perf_counter() - t0
    anchors = page * pages
    return {"anchors": anchors, "rows": rows, "seconds": round(seconds, 2),
            "anchors_per_s": round(anchors / seconds, 1), "offsets": offsets,
            "projected_full_run_h": round(total / (anchors / seconds) / 3600, 2)}


_UNWIND_HEAD = "UNWIND $ids AS aid\nMATCH (a:Patent {id: aid})\n"


def run_patentcl_paging(graph: Graph, page: int, pages: int, seed: int = 1) -> dict[str, Any]:
    """citation-cpc (latest) on the PatentCL pattern's pages, two ways, one session each: paged PatentCL's
    way (``SKIP $skip LIMIT $limit`` in the query) and as our miner sends a batch (``UNWIND $ids`` of the
    same page's anchors). The page is the same, so only the paging differs; which way runs first
    alternates from page to page, so neither always meets a warmer cache.
    """
    query = Registry.load().latest("citation-cpc")
    if not query.body.startswith(_UNWIND_HEAD):
        raise SystemExit(f"{query.ref} no longer starts with the UNWIND head this benchmark replaces")
    paged = "MATCH (a:Patent)\nWITH a SKIP $skip LIMIT $limit\n" + query.body[len(_UNWIND_HEAD):]
    params = {"k": 3, "pos_mul": multiplier(seed, "positive"), "neg_mul": multiplier(seed, "negative")}
    total = graph.count("MATCH (p:Patent) RETURN count(p) AS c")
    offsets = [int(total * i / pages) for i in range(pages)]
    seconds = {"skip_limit": 0.0, "unwind_ids": 0.0}
    rows = {"skip_limit": 0, "unwind_ids": 0}
    for i, skip in enumerate(offsets):
        ids = [r["id"] for r in graph.read("MATCH (a:Patent) WITH a SKIP $skip LIMIT $limit RETURN a.id AS id",
                                           {"skip": skip, "limit": page})]
        runs: list[tuple[str, str, dict[str, Any]]] = [
            ("skip_limit", paged, {**params, "skip": skip, "limit": page}),
            ("unwind_ids", query.body, {**params, "ids": ids}),
        ]
        for key, body, p in (runs if i % 2 == 0 else runs[::-1]):
            t0 = time.perf_counter()
            rows[key] += len(graph.read(body, p))
            seconds[key] += time.perf_counter() - t0
    anchors = page * pages
    return {"query": query.ref, "anchors": anchors, "rows": rows, "offsets": offsets,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "anchors_per_s": {k: round(anchors / v, 1) for k, v in seconds.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anchors", type=int, default=20_000, help="n; the linearity check also runs 2n.")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--strategy", action="append", default=None,
                    help="Query to time, NAME[@vN][:LEVEL] (LEVEL for cpc-distance); repeat to compare versions "
                         "(default: citation-cpc).")
    ap.add_argument("--patentcl-page", type=int, default=500)
    ap.add_argument("--patentcl-pages", type=int, default=8, help="0 skips the PatentCL pattern.")
    ap.add_argument("--warmup", type=int, default=5_000,
                    help="Anchors mined (another seed, so other anchors) before timing, to fill Neo4j's page "
                         "cache; 0 times a cold server.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    strategies = args.strategy or ["citation-cpc"]
    with Graph.connect() as graph:
        size = {"patents": graph.count("MATCH (p:Patent) RETURN count(p) AS c"),
                "citations": graph.count("MATCH ()-[r:CITES]->() RETURN count(r) AS c")}
        warmup = run_ours(graph, args.warmup, args.workers, strategies[0], args.batch_size, seed=2) \
            if args.warmup else None
        runs = []
        for strategy in strategies:
            n = run_ours(graph, args.anchors, args.workers, strategy, args.batch_size)
            n2 = run_ours(graph, 2 * args.anchors, args.workers, strategy, args.batch_size)
            runs.append({"n": n, "2n": n2, "time_ratio_2n_over_n": round(n2["mine_s"] / n["mine_s"], 2)})
        cl = run_patentcl(graph, args.patentcl_page, args.patentcl_pages) if args.patentcl_pages else None
        paged = run_patentcl_paging(graph, args.patentcl_page, args.patentcl_pages) if args.patentcl_pages else None
    for r in runs:
        r["speedup_vs_patentcl"] = round(r["2n"]["anchors_per_s"] / cl["anchors_per_s"], 2) if cl else None
    report = {"graph": size, "workers": args.workers, "batch_size": args.batch_size, "warmup": warmup, "ours": runs,
              "patentcl": cl, "patentcl_paging_same_work": paged}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"graph: {size['patents']:,} patents, {size['citations']:,} citations; {args.workers} workers, "
          f"batches of {args.batch_size}")
    if warmup:
        print(f"warm-up (seed 2, not timed below): {warmup['anchors']:,} anchors, "
              f"{warmup['anchors_per_s']:,} anchors/s")
    for r in runs:
        for key in ("n", "2n"):
            o = r[key]
            print(f"{o['strategy']:<18} {key:>2}={o['anchors']:,}: {o['mine_s']:.1f}s, "
                  f"{o['anchors_per_s']:,} anchors/s")
        vs = f"; / PatentCL: x{r['speedup_vs_patentcl']}" if cl else ""
        print(f"{r['n']['strategy']:<18} time(2n)/time(n) = {r['time_ratio_2n_over_n']}{vs}")
    if not cl:
        return
    print(f"PatentCL pattern: {cl['anchors']:,} anchors in {cl['seconds']:.1f}s = {cl['anchors_per_s']:,} anchors/s "
          f"(pages at offsets {cl['offsets']}); full run ~{cl['projected_full_run_h']} h")
    if paged:
        rate = paged["anchors_per_s"]
        print(f"Same pages, our work ({paged['query']}, 1 session): SKIP/LIMIT paging {rate['skip_limit']:,} "
              f"anchors/s, UNWIND $ids {rate['unwind_ids']:,} anchors/s "
              f"(x{rate['unwind_ids'] / rate['skip_limit']:.2f})")


if __name__ == "__main__":
    main()
