"""Mining (anchor, positive, hard negatives) training sets out of the graph with versioned queries.

Anchors are split by grant date (no leakage: a test anchor is never a train anchor),
processed in batches of ids (``UNWIND $ids``, never SKIP/LIMIT), in parallel sessions,
batches cut in an order that keeps CPC neighbours together (``store_order``,
``positive_order``; an anchor's row does not depend on its batch), each batch written
as its own Parquet part so that an interrupted run resumes where it stopped. Sampling is
decided by the seed: queries order candidates by a seeded permutation of each patent's
integer key ``rk``; random candidates come from NumPy's seeded generator. ``dataset.json``
is written last; without it a run is unfinished.

Example::

    with Graph.connect() as graph:
        info = mine(graph, Path("runs/citation-cpc"), MineOptions(strategy="citation-cpc", negatives=3))
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from patentminer.cypher.connection import Graph
from patentminer.cypher.registry import Query, Registry
from patentminer.errors import ConfigError, GraphError, OutputExistsError

#: Strategy -> how its query takes a batch: a list of ids, or rows with sampled candidates.
STRATEGIES: dict[str, str] = {
    "citation-cpc": "ids", "citation-of-citation": "ids", "cpc-siblings": "ids", "random": "rows",
    "cpc-distance": "rows",
}
LEVELS = ("subgroup", "group", "subclass", "class", "section", "random")
_PRIME = 2_147_483_647
_FORMAT = 1


@dataclass(frozen=True)
class MineOptions:
    """What to mine. ``strategy`` is NAME or NAME@vN; ``test_from`` an ISO date or None (newest 5%)."""

    strategy: str = "citation-cpc"
    negatives: int = 3
    seed: int = 0
    test_from: str | None = None
    dev_fraction: float = 0.05
    limit_anchors: int | None = None
    workers: int = 2
    batch_size: int = 500
    level: str = "subgroup"
    template: str = "{title} [SEP] {abstract}"
    corpus_size: int = 10_000
    overwrite: bool = False

    def validate(self) -> None:
        if self.negatives < 1:
            raise ConfigError(f"--negatives {self.negatives}: give at least 1.")
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError(f"--dev-fraction {self.dev_fraction}: use a fraction in [0, 1).")
        if self.limit_anchors is not None and self.limit_anchors < 1:
            raise ConfigError(f"--limit-anchors {self.limit_anchors}: give at least 1.")
        if self.workers < 1 or self.batch_size < 1:
            raise ConfigError("--workers and --batch-size must be at least 1.")
        if self.level not in LEVELS:
            raise ConfigError(f"--level {self.level!r} is not valid; use one of {', '.join(LEVELS)}.")
        if self.test_from is not None:
            try:
                date.fromisoformat(self.test_from)
            except ValueError as e:
                raise ConfigError(f"--test-from {self.test_from!r} is not a date; use YYYY-MM-DD.") from e
        try:
            self.template.format(title="t", abstract="a")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"--template {self.template!r} may use only {{title}} and {{abstract}}.") from e

    def fingerprint(self, query: Query) -> dict[str, Any]:
        """What decides the output: a run with a different fingerprint cannot resume this one."""
        keep = {k: v for k, v in asdict(self).items() if k not in ("workers", "overwrite")}
        if query.name != "cpc-distance":
            keep.pop("level")
        return {"query": query.ref, "sha256": query.sha256, **keep}


def resolve_strategy(ref: str) -> Query:
    name = ref.partition("@")[0]
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)} (optionally NAME@vN).")
    return Registry.load().get(ref)


def multiplier(seed: int, salt: str) -> int:
    """A seed-derived odd multiplier in [2^20, 2^31 - 1): (rk * m) mod p is then a seeded permutation."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{salt}".encode()).digest()[:8], "big")
    return (h % (_PRIME - (1 << 21))) | 1 | (1 << 20)


def check_graph(graph: Graph) -> dict[str, int]:
    """The graph must hold patents imported by patentminer (with the schema); returns counts."""
    names = {r["name"] for r in graph.read("SHOW CONSTRAINTS YIELD name RETURN name")}
    if "patent_id" not in names:
        raise GraphError("the graph lacks patentminer's schema (no patent_id constraint); load it with "
                         "`patentminer import OUT_DIR` first.")
    patents = graph.count("MATCH (p:Patent) RETURN count(p) AS c")
    if patents == 0:
        raise GraphError("the graph holds no Patent nodes; run `patentminer etl` and `patentminer import` first.")
    if graph.count("MATCH (p:Patent) WHERE p.rk IS NULL RETURN count(p) AS c") > 0:
        raise GraphError("Patent nodes lack the rk property this patentminer mines with; re-run `patentminer etl` "
                         "and `patentminer import --overwrite`.")
    cites = graph.count("MATCH ()-[r:CITES]->() RETURN count(r) AS c")
    cpc = graph.count("MATCH ()-[r:CLASSIFIED_AS]->() RETURN count(r) AS c")
    return {"patents": patents, "citations": cites, "classifications": cpc}


def split_anchors(table: pl.DataFrame, options: MineOptions, needs: str) -> tuple[pl.DataFrame, str]:
    """Eligible anchors with a ``split`` column (train/dev/test) and the test cut-off date used."""
    eligible = table.filter(pl.col(needs)).sort("id")
    if eligible.is_empty():
        what = "cites another patent in the graph" if needs == "cites" else "has an inventional CPC subgroup"
        raise GraphError(f"no anchors: no patent in the graph {what}.")
    if options.limit_anchors is not None and options.limit_anchors < eligible.height:
        key = (pl.col("rk") * multiplier(options.seed, "limit")) % _PRIME
        eligible = eligible.with_columns(key.alias("_k")).sort("_k", "id").head(options.limit_anchors).drop("_k")
        eligible = eligible.sort("id")
    test_from = options.test_from
    if test_from is None:
        dates = eligible["date"].sort()
        test_from = str(dates[min(len(dates) - 1, int(len(dates) * 0.95))])
    is_test = pl.col("date") >= test_from
    rest = eligible.filter(~is_test)
    rng = np.random.default_rng(options.seed)
    n_dev = round(rest.height * options.dev_fraction)
    dev_ids = set(rest["id"].to_numpy()[rng.permutation(rest.height)[:n_dev]].tolist()) if n_dev else set()
    out = eligible.with_columns(
        pl.when(is_test).then(pl.lit("test")).when(pl.col("id").is_in(list(dev_ids))).then(pl.lit("dev"))
        .otherwise(pl.lit("train")).alias("split"))
    return out, test_from


def store_order(anchors: pl.DataFrame) -> pl.DataFrame:
    """``anchors`` in the order the graph stores them (by the number that ends each ``node`` elementId),
    then by id; the batches are cut from this order.

    The ETL writes patents in CPC order and the import keeps file order, so neighbours in this
    order share CPC branches: cpc-siblings mines 2.6-2.8x, citation-cpc ~1.1x faster on the 1M graph
    than with batches in id order (benchmarks/RESULTS.md). An elementId without that number (another
    Neo4j) only costs the speed: which rows an anchor gets does not depend on its batch.
    """
    key = pl.col("node").str.extract(r"(\d+)$").cast(pl.Int64, strict=False)
    return anchors.with_columns(key.alias("_store")).sort("_store", "id", nulls_last=True).drop("_store")


#: cpc-distance levels whose branches are big enough that sorting anchors by their positive's CPC symbol
#: pays for the extra query (1M graph, v3: group 1.5x, subclass 2.6x, class 3.2x, section 3.3x faster
#: batches for ~35 us per anchor; at the subgroup level the query costs more than it saves).
_POSITIVE_ORDER_LEVELS = ("group", "subclass", "class", "section")
_ORDER_CHUNK = 5_000


def positive_order(graph: Graph, ids: list[str], pos_mul: int, workers: int) -> list[str]:
    """``ids`` sorted by the CPC symbol of each anchor's seeded positive (query positive-cpc), stable, so
    anchors whose negatives come from the same branch share a batch. Anchors without one keep their
    order at the end."""
    body = Registry.load().latest("positive-cpc").body
    chunks = [ids[i:i + _ORDER_CHUNK] for i in range(0, len(ids), _ORDER_CHUNK)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(lambda chunk: graph.read(body, {"ids": chunk, "pos_mul": pos_mul}), chunks)
        sym = {r["id"]: r["sym"] for rows in found for r in rows}
    place = {a: i for i, a in enumerate(ids)}
    return sorted(ids, key=lambda a: (sym.get(a) is None, sym.get(a) or "", place[a]))


class _Candidates:
    """Seeded uniform samples of patents granted before a date (for the random strategies)."""

    def __init__(self, table: pl.DataFrame, seed: int, k: int) -> None:
        t = table.sort("date", "id")
        self.ids = t["id"].to_list()
        self.dates = t["date"].to_numpy()
        self.seed = seed
        self.n = 4 * k + 16

    def sample(self, anchor_id: str, anchor_date: str) -> list[str]:
        earlier = int(np.searchsorted(self.dates, anchor_date, side="left"))
        if earlier == 0:
            return []
        digest = hashlib.sha256(f"{self.seed}:{anchor_id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        picks = rng.choice(earlier, size=min(self.n, earlier), replace=False)
        return [self.ids[i] for i in picks.tolist()]


def mine(graph: Graph, out_dir: Path, options: MineOptions,
         progress: Callable[[int, int], None] | None = None,
         stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Mine ``options.strategy`` into ``out_dir``; returns the dataset description (dataset.json).

    ``progress(done, total)`` is called after every batch, ``stage(what)`` when a phase starts
    (listing anchors, ordering them, mining, writing the files): the phases before and after the
    batches take minutes on a full-size graph.
    """
    options.validate()
    query = resolve_strategy(options.strategy)
    if query.name == "random" and options.level != "subgroup":
        raise ConfigError("--level applies to the cpc-distance strategy only.")
    started = time.monotonic()
    timings: dict[str, float] = {}
    fingerprint = options.fingerprint(query)
    parts = out_dir / "parts"
    state = out_dir / ".mine-state.json"
    done = out_dir / "dataset.json"
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("fingerprint") == fingerprint and not options.overwrite:
            return dict(previous)
        if not options.overwrite:
            raise OutputExistsError(f"{out_dir} holds a dataset mined with other settings ({previous['query']['ref']}"
                                    "); pass --overwrite to replace it or choose another --out.")
    if state.exists() and not options.overwrite and json.loads(state.read_text()) != fingerprint:
        raise OutputExistsError(f"{out_dir} holds an unfinished run with other settings; rerun it with the "
                                    "same options to resume, or pass --overwrite to start again.")
    if options.overwrite:
        done.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob("*.tmp"):
        stale.unlink()
    state.write_text(json.dumps(fingerprint, indent=2))

    say = stage or (lambda _what: None)
    say("listing anchors")
    t0 = time.monotonic()
    graph_counts = check_graph(graph)
    table = graph.read_table(Registry.load().latest("anchors").body,
                             {"id": pl.String, "date": pl.String, "rk": pl.Int64, "cites": pl.Boolean,
                              "inventional": pl.Boolean, "node": pl.String}).sort("id")
    needs = "inventional" if query.name == "cpc-siblings" else "cites"
    anchors, test_from = split_anchors(table, options, needs)
    timings["anchors"] = round(time.monotonic() - t0, 2)

    ids = store_order(anchors)["id"].to_list()
    dates = dict(zip(anchors["id"].to_list(), anchors["date"].to_list(), strict=True))
    sampler = _Candidates(table, options.seed, options.negatives) if STRATEGIES[query.name] == "rows" else None
    params: dict[str, Any] = {"k": options.negatives, "pos_mul": multiplier(options.seed, "positive"),
              "neg_mul": multiplier(options.seed, "negative")}
    if query.name == "cpc-distance":
        params["level"] = options.level
    if query.name == "random":
        params.pop("neg_mul")
    if query.name == "cpc-distance" and options.level in _POSITIVE_ORDER_LEVELS:
        say(f"ordering {len(ids):,} anchors by their positive's CPC symbol")
        t0 = time.monotonic()
        ids = positive_order(graph, ids, params["pos_mul"], options.workers)
        timings["order"] = round(time.monotonic() - t0, 2)
    batches = [ids[i:i + options.batch_size] for i in range(0, len(ids), options.batch_size)]
    _check_plan(parts, ids, options.batch_size, graph_counts)
    todo = [i for i in range(len(batches)) if not (parts / f"part-{i:06d}.parquet").exists()]

    def run_batch(i: int) -> None:
        batch = batches[i]
        if sampler is not None:
            need_cands = query.name == "random" or options.level == "random"
            args: dict[str, Any] = {"rows": [{"id": a, "cands": sampler.sample(a, dates[a]) if need_cands else []}
                                             for a in batch]}
        else:
            args = {"ids": batch}
        rows = graph.read(query.body, {**params, **args})
        df = pl.DataFrame(rows, schema={"anchor_id": pl.String, "positive_id": pl.String,
                                        "negative_ids": pl.List(pl.String), "level": pl.String})
        target = parts / f"part-{i:06d}.parquet"
        tmp = target.with_suffix(".tmp")
        df.write_parquet(tmp)
        tmp.replace(target)

    say(f"mining {query.ref}")
    t0 = time.monotonic()
    finished = len(batches) - len(todo)
    if progress:
        progress(finished, len(batches))
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        futures = {pool.submit(run_batch, i) for i in todo}
        try:
            while futures:
                completed, futures = wait(futures, return_when=FIRST_COMPLETED)
                for f in completed:
                    f.result()
                    finished += 1
                if progress:
                    progress(finished, len(batches))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    timings["mine"] = round(time.monotonic() - t0, 2)

    say("writing splits and eval files")
    t0 = time.monotonic()
    result = _assemble(graph, out_dir, parts, anchors, options, test_from)
    timings["assemble"] = round(time.monotonic() - t0, 2)
    timings["total"] = round(time.monotonic() - started, 2)
    mined_seconds = (timings["mine"] + timings.get("order", 0.0)) or 1e-9  # the ordering is part of mining
    info = {
        "format": _FORMAT,
        "query": {"name": query.name, "version": query.version, "ref": query.ref, "sha256": query.sha256},
        "parameters": {k: v for k, v in asdict(options).items() if k not in ("overwrite",)},
        "seed": options.seed,
        "fingerprint": fingerprint,
        "test_from": test_from,
        "graph": graph_counts,
        **result,
        "anchors_per_s": round(len(ids) / mined_seconds, 1) if len(todo) == len(batches) else None,
        "timings_s": timings,
    }
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(done)
    shutil.rmtree(parts, ignore_errors=True)
    state.unlink(missing_ok=True)
    return info


def _check_plan(parts: Path, ids: list[str], batch_size: int, graph_counts: dict[str, int]) -> None:
    """Keep the parts of an interrupted run only if they belong to the same batches of the same anchors
    on a graph with the same counts.

    The options alone do not say that: the graph may have been re-imported between the two runs.
    Parts of another plan are removed, so the run starts clean instead of mixing two graphs.
    """
    head = json.dumps({"batch_size": batch_size, "graph": graph_counts}, sort_keys=True)
    digest = hashlib.sha256(head.encode() + b"\n" + "\n".join(ids).encode()).hexdigest()
    plan = parts / "plan.sha256"
    if plan.exists() and plan.read_text() != digest:
        for stale in parts.glob("part-*.parquet"):
            stale.unlink()
    tmp = plan.with_suffix(".tmp")
    tmp.write_text(digest)
    tmp.replace(plan)


def _fetch_text(graph: Graph, ids: list[str], template: str, with_cpc: bool = True) -> pl.DataFrame:
    """Text (from the template) and, with ``with_cpc``, first CPC symbol (the kNN/plot label) of each patent."""
    cpc = ("OPTIONAL CALL (p) { MATCH (p)-[r:CLASSIFIED_AS]->(s:CPCSubgroup) RETURN s.code AS cpc "
           "ORDER BY r.sequence LIMIT 1 } " if with_cpc else "WITH p, null AS cpc ")
    rows: list[dict[str, Any]] = []
    for i in range(0, len(ids), 5000):
        rows += graph.read(
            "UNWIND $ids AS id MATCH (p:Patent {id: id}) " + cpc +
            "RETURN p.id AS id, coalesce(p.title, '') AS title, coalesce(p.abstract, '') AS abstract, cpc",
            {"ids": ids[i:i + 5000]})
    return pl.DataFrame([{"id": r["id"], "text": template.format(title=r["title"], abstract=r["abstract"]),
                          "cpc": r["cpc"] or ""} for r in rows],
                        schema={"id": pl.String, "text": pl.String, "cpc": pl.String})


def _with_texts(graph: Graph, chunk: pl.DataFrame, id_cols: list[str], template: str) -> pl.DataFrame:
    """``chunk``'s id columns, a text column for each (``anchor_id`` -> ``anchor``) and ``level``."""
    needed = sorted(set(chunk.select(id_cols).unpivot()["value"].drop_nulls().to_list()))
    texts = _fetch_text(graph, needed, template, with_cpc=False)
    lookup = dict(zip(texts["id"].to_list(), texts["text"].to_list(), strict=True))
    return chunk.select([*id_cols, *[pl.col(c).replace_strict(lookup, default="", return_dtype=pl.String)
                                     .alias(c.removesuffix("_id")) for c in id_cols], "level"])


#: Dataset rows whose texts are fetched and written at a time (5 texts each: ~100 MB at 20,000).
_TEXT_ROWS = 20_000


class _ChunkedParquet:
    """A Parquet file written a frame at a time under a temporary name, renamed on ``close``.

    Example::

        with _ChunkedParquet(Path("train.parquet")) as w:
            w.write(frame)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, df: pl.DataFrame) -> None:
        table = df.to_arrow()
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        self.writer.write_table(table)
        self.rows += df.height

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.tmp.replace(self.path)

    def __enter__(self) -> _ChunkedParquet:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif self.writer is not None:  # an interrupted file keeps its temporary name
            self.writer.close()


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    with _ChunkedParquet(path) as writer:
        writer.write(df)


def _assemble(graph: Graph, out_dir: Path, parts: Path, anchors: pl.DataFrame, options: MineOptions,
              test_from: str) -> dict[str, Any]:
    k = options.negatives
    mined = pl.read_parquet(parts / "*.parquet") if any(parts.glob("*.parquet")) else pl.DataFrame(
        schema={"anchor_id": pl.String, "positive_id": pl.String, "negative_ids": pl.List(pl.String),
                "level": pl.String})
    mined = mined.sort("anchor_id")
    skipped = {
        "no positive": anchors.height - mined.height,
        f"fewer than {k} negatives": mined.filter(pl.col("negative_ids").list.len() < k).height,
    }
    full = mined.filter(pl.col("negative_ids").list.len() >= k).join(
        anchors.select(pl.col("id").alias("anchor_id"), "split"), on="anchor_id", how="left")
    if full.is_empty():
        raise GraphError(f"no anchor has {k} negatives with this strategy; lower --negatives (anchors skipped: "
                         f"{skipped}).")
    full = full.with_columns([pl.col("negative_ids").list.get(i).alias(f"negative_{i + 1}_id") for i in range(k)])
    id_cols = ["anchor_id", "positive_id"] + [f"negative_{i + 1}_id" for i in range(k)]

    test_anchors = full.filter(pl.col("split") == "test")["anchor_id"].to_list()
    qrels_rows: list[dict[str, Any]] = []
    for i in range(0, len(test_anchors), 5000):
        qrels_rows += graph.read("UNWIND $ids AS id MATCH (a:Patent {id: id})-[:CITES]->(p:Patent) "
                                 "RETURN a.id AS query_id, p.id AS corpus_id", {"ids": test_anchors[i:i + 5000]})
    qrels = pl.DataFrame(qrels_rows, schema={"query_id": pl.String, "corpus_id": pl.String}).with_columns(
        pl.lit(1).alias("score")).sort("query_id", "corpus_id")
    relevant = set(qrels["corpus_id"].to_list())
    n_distract = max(0, options.corpus_size - len(relevant))
    # The first n_distract earlier patents in a seeded order, relevant ones left out: the server keeps the
    # top n_distract + |relevant| of that order instead of sending every earlier patent (13 s at 1M).
    first = graph.read_table(
        "MATCH (p:Patent) WHERE p.date < date($d) WITH p.id AS id, p.rk AS rk "
        "ORDER BY (rk * $m) % 2147483647, id LIMIT $n RETURN id",
        {"id": pl.String}, {"d": test_from, "m": multiplier(options.seed, "corpus"), "n": n_distract + len(relevant)})
    distract = first.filter(~pl.col("id").is_in(list(relevant))).head(n_distract)["id"].to_list()
    corpus_ids = sorted(relevant | set(distract))

    corpus_texts = _fetch_text(graph, corpus_ids, options.template)
    corpus = pl.DataFrame({"corpus_id": corpus_ids}).join(
        corpus_texts.rename({"id": "corpus_id"}), on="corpus_id", how="left", maintain_order="left").select(
        "corpus_id", pl.col("text").fill_null(""), pl.col("cpc").fill_null(""))

    # Texts are joined a chunk of rows at a time and each split is written chunk by chunk: a full-dump
    # dataset holds five texts per row for millions of rows, far more than memory.
    counts: dict[str, int] = {}
    levels: dict[str, int] = {}
    with _ChunkedParquet(out_dir / "eval" / "queries.parquet") as queries:
        for split in ("train", "dev", "test"):
            part = full.filter(pl.col("split") == split)
            counts[split] = part.height
            with _ChunkedParquet(out_dir / f"{split}.parquet") as writer:
                for start in range(0, max(part.height, 1), _TEXT_ROWS):
                    rows = _with_texts(graph, part.slice(start, _TEXT_ROWS), id_cols, options.template)
                    writer.write(rows)
                    for level, n in rows.group_by("level").len().iter_rows():
                        levels[level] = levels.get(level, 0) + n
                    if split == "test":
                        queries.write(rows.select(pl.col("anchor_id").alias("query_id"),
                                                  pl.col("anchor").alias("text")))
    _write_parquet(corpus, out_dir / "eval" / "corpus.parquet")
    _write_parquet(qrels, out_dir / "eval" / "qrels.parquet")
    levels = dict(sorted(levels.items()))
    return {"rows": counts, "anchors": {"eligible": anchors.height, "mined": full.height, "skipped": skipped},
            "levels": levels, "eval": {"queries": queries.rows, "corpus": corpus.height, "qrels": qrels.height}}
