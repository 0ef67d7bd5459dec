"""Mining (anchor, positive, hard negatives) rows out of the graph with versioned queries.

Anchors are split by grant date (no leakage: a test anchor is never a train anchor) and processed
in batches of ids (``UNWIND $ids``, never SKIP/LIMIT), in parallel sessions, each batch written as
its own Parquet part so that an interrupted run resumes where it stopped. Batches are cut in an
order that keeps CPC neighbours together (:func:`store_order`, :func:`positive_order`); an anchor's
row does not depend on its batch. Sampling is decided by the seed: queries order candidates by a
seeded permutation of each patent's integer key ``rk``; random candidates come from NumPy's seeded
generator. The parts then become a dataset (:mod:`patentminer.dataset.assemble`); ``dataset.json``
is written last, and without it a run is unfinished.

Every query that decides what a dataset holds is a versioned file, checked against the lock
before it runs (:meth:`Registry.checked`), and recorded with its hash in ``dataset.json``.

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

from patentminer.cypher.connection import Graph
from patentminer.cypher.registry import Query, Registry
from patentminer.errors import ConfigError, GraphError, OutputExistsError

LEVELS = ("subgroup", "group", "subclass", "class", "section", "random")
#: The salt of each seed-derived multiplier a query takes.
_SALTS = {"pos_mul": "positive", "neg_mul": "negative"}
PRIME = 2_147_483_647
PART_SCHEMA: dict[str, Any] = {"anchor_id": pl.String, "positive_id": pl.String, "negative_ids": pl.List(pl.String),
               "level": pl.String}


@dataclass(frozen=True)
class Strategy:
    """What a strategy needs from the graph and how its query takes a batch.

    ``needs``: the anchor flag from the anchors query (``cites``: cites a patent in the graph;
    ``inventional``: has an inventional CPC subgroup). ``takes``: ``ids`` (``UNWIND $ids``) or
    ``rows`` (``{id, cands}``, with seeded random candidates where the strategy samples them).
    ``seeds``: the seed-derived multipliers its query orders by. ``positive_order``: the levels at
    which anchors are batched by their positive's CPC symbol (large CPC branches around the positive).
    """

    name: str
    needs: str
    takes: str
    seeds: tuple[str, ...]
    levels: bool = False
    positive_order: tuple[str, ...] = ()

    def samples(self, level: str) -> bool:
        """Whether batches carry seeded random candidates."""
        return self.name == "random" or (self.levels and level == "random")


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("citation-cpc", "cites", "ids", ("pos_mul", "neg_mul")),
    Strategy("citation-of-citation", "cites", "ids", ("pos_mul", "neg_mul")),
    Strategy("cpc-distance", "cites", "rows", ("pos_mul", "neg_mul"), levels=True,
             positive_order=("group", "subclass", "class", "section")),
    Strategy("random", "cites", "rows", ("pos_mul",)),
    Strategy("cpc-siblings", "inventional", "ids", ("pos_mul", "neg_mul")),
    Strategy("knn", "cites", "knn", ("pos_mul",)),
)}
VETOES = ("graph", "none")


@dataclass(frozen=True)
class MineOptions:
    """What to mine. ``strategy`` is NAME or NAME@vN; ``test_from`` an ISO date or None (newest 5%).

    The benchmark is bounded: ``eval_queries`` test queries, a corpus of their relevant patents plus
    seeded distractors up to ``corpus_size``, and ``heldout_size`` held-out patents for kNN accuracy.
    The knn strategy reads ``embeddings`` (a ``patentminer embed`` output; ``embedding_model``, when
    given, must be the model that made them) and takes ``neighbours``, ``margin`` and ``veto``.
    """

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
    eval_queries: int = 5_000
    corpus_size: int = 100_000
    heldout_size: int = 10_000
    embeddings: str | None = None
    embedding_model: str | None = None
    neighbours: int = 50
    margin: float = 0.95
    veto: str = "graph"
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
        for flag, value in (("--eval-queries", self.eval_queries), ("--corpus-size", self.corpus_size),
                            ("--heldout-size", self.heldout_size)):
            if value < 1:
                raise ConfigError(f"{flag} {value}: give at least 1.")
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
        if not 0 < self.margin <= 1:
            raise ConfigError(f"--margin {self.margin}: use a fraction in (0, 1]; a candidate more similar to the "
                              "anchor than margin x the positive is dropped (0.95 drops near-duplicates of it).")
        if self.veto not in VETOES:
            raise ConfigError(f"--veto {self.veto!r} is not valid; use graph or none.")
        knn = self.strategy.partition("@")[0] == "knn"
        if knn and self.neighbours < self.negatives:
            raise ConfigError(f"--neighbours {self.neighbours}: give at least --negatives ({self.negatives}).")
        if knn and not self.embeddings:
            raise ConfigError("the knn strategy needs --embeddings DIR (made by `patentminer embed --model MODEL "
                              "--out DIR`).")
        if not knn and self.embeddings:
            raise ConfigError("--embeddings applies to the knn strategy only.")

    def fingerprint(self, query: Query, strategy: Strategy, embeddings: dict[str, Any] | None = None) -> dict[str, Any]:
        """What decides the output: a run with a different fingerprint cannot resume this one."""
        keep = {k: v for k, v in asdict(self).items() if k not in ("workers", "overwrite")}
        if not strategy.levels:
            keep.pop("level")
        knn = ("embeddings", "embedding_model", "neighbours", "margin", "veto")
        if strategy.takes != "knn":
            keep = {k: v for k, v in keep.items() if k not in knn}
        else:  # the store's content decides, not where it lies
            keep.pop("embeddings")
            keep["embeddings_fingerprint"] = embeddings
        return {"query": query.ref, "sha256": query.sha256, **keep}


def resolve_strategy(ref: str) -> tuple[Strategy, Query]:
    """The strategy NAME[@vN] names and its query, checked against the lock."""
    name = ref.partition("@")[0]
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)} (optionally NAME@vN).")
    return STRATEGIES[name], Registry.load().checked(ref)


def multiplier(seed: int, salt: str) -> int:
    """A seed-derived odd multiplier in [2^20, 2^31 - 1): (rk * m) mod p is then a seeded permutation."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{salt}".encode()).digest()[:8], "big")
    return (h % (PRIME - (1 << 21))) | 1 | (1 << 20)


def seeded_key(seed: int, salt: str) -> pl.Expr:
    """The seeded permutation of ``rk`` the queries order by, as a Polars expression."""
    return (pl.col("rk") * multiplier(seed, salt)) % PRIME


def check_graph(graph: Graph) -> dict[str, int]:
    """The graph must hold patents imported by patentminer (with the schema); returns counts."""
    names = {r["name"] for r in graph.read("SHOW CONSTRAINTS YIELD name RETURN name")}
    if "patent_id" not in names:
        raise GraphError("the graph lacks patentminer's schema (no patent_id constraint); load it with "
                         "`patentminer import OUT_DIR` first.")
    patents = graph.count("MATCH (p:Patent) RETURN count(p) AS c")
    if patents == 0:
        raise GraphError("the graph holds no Patent nodes; run `patentminer etl` and `patentminer import` first.")
    # An import is all of one ETL output, so a sample tells its format (a full scan takes a while at full size).
    old_nodes = graph.count("MATCH (p:Patent) WITH p LIMIT 1000 WHERE p.rk IS NULL RETURN count(p) AS c")
    old_rels = graph.count("MATCH ()-[r:CLASSIFIED_AS]->() WITH r LIMIT 1000 "
                           "WHERE r.rk IS NULL OR r.sg IS NULL OR r.b IS NULL RETURN count(r) AS c")
    indexes = {r["name"] for r in graph.read("SHOW INDEXES YIELD name RETURN name")}
    if old_nodes or old_rels or "classified_as_bucket" not in indexes:
        raise GraphError("the graph was imported from an older ETL output (no rk on Patent nodes, no rk, sg and b on "
                         "CLASSIFIED_AS relationships, or no classified_as_bucket index), which this patentminer "
                         "mines with; re-run `patentminer etl` and `patentminer import --overwrite`.")
    cites = graph.count("MATCH ()-[r:CITES]->() RETURN count(r) AS c")
    cpc = graph.count("MATCH ()-[r:CLASSIFIED_AS]->() RETURN count(r) AS c")
    return {"patents": patents, "citations": cites, "classifications": cpc}


_ANCHOR_SCHEMA = {"id": pl.String, "date": pl.String, "rk": pl.Int64, "cites": pl.Boolean,
                  "inventional": pl.Boolean, "node": pl.String}


def list_patents(graph: Graph, query: Query) -> pl.DataFrame:
    """Every dated patent (the anchors query): id, date, rk, cites, inventional and ``store``, the number
    that ends its elementId (its place in the store), sorted by id. Streamed: a full-size graph's rows
    are never Python objects all at once."""
    key = pl.col("node").str.extract(r"(\d+)$").cast(pl.Int64, strict=False).alias("store")
    chunks = [c.with_columns(key).drop("node") for c in graph.stream_table(query.body, _ANCHOR_SCHEMA)]
    if not chunks:
        return pl.DataFrame(schema={**{k: v for k, v in _ANCHOR_SCHEMA.items() if k != "node"}, "store": pl.Int64})
    return pl.concat(chunks).sort("id")


def split_anchors(table: pl.DataFrame, options: MineOptions, needs: str) -> tuple[pl.DataFrame, str]:
    """Eligible anchors with a ``split`` column (train/dev/test) and the test cut-off date used."""
    eligible = table.filter(pl.col(needs)).sort("id")
    if eligible.is_empty():
        what = "cites another patent in the graph" if needs == "cites" else "has an inventional CPC subgroup"
        raise GraphError(f"no anchors: no patent in the graph {what}.")
    if options.limit_anchors is not None and options.limit_anchors < eligible.height:
        eligible = (eligible.with_columns(seeded_key(options.seed, "limit").alias("_k")).sort("_k", "id")
                    .head(options.limit_anchors).drop("_k").sort("id"))
    test_from = options.test_from
    if test_from is None:
        dates = eligible["date"].sort()
        test_from = str(dates[min(len(dates) - 1, int(len(dates) * 0.95))])
    is_test = pl.col("date") >= test_from
    rest = eligible.filter(~is_test)
    rng = np.random.default_rng(options.seed)
    n_dev = round(rest.height * options.dev_fraction)
    dev_ids = rest["id"].gather(rng.permutation(rest.height)[:n_dev]) if n_dev else pl.Series("id", [], pl.String)
    out = eligible.with_columns(
        pl.when(is_test).then(pl.lit("test")).when(pl.col("id").is_in(dev_ids.implode())).then(pl.lit("dev"))
        .otherwise(pl.lit("train")).alias("split"))
    return out, test_from


def store_order(anchors: pl.DataFrame) -> pl.DataFrame:
    """``anchors`` in the order the graph stores them (``store``), then by id; batches are cut from it.

    The ETL writes patents in CPC order and the import keeps file order, so neighbours in this order
    share CPC branches (figures in benchmarks/RESULTS.md, "Batch order"). A store key that is missing
    (another Neo4j's elementIds) only costs speed: which rows an anchor gets does not depend on its batch.
    """
    return anchors.sort("store", "id", nulls_last=True)


_ORDER_CHUNK = 5_000


def positive_order(graph: Graph, ids: pl.Series, pos_mul: int, workers: int) -> pl.Series:
    """``ids`` sorted by the CPC symbol of each anchor's seeded positive (query positive-cpc), stable, so
    anchors whose negatives come from the same branch share a batch. Anchors without one keep their
    order at the end."""
    body = Registry.load().checked("positive-cpc").body
    chunks = [ids.slice(i, _ORDER_CHUNK).to_list() for i in range(0, len(ids), _ORDER_CHUNK)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(lambda chunk: graph.read(body, {"ids": chunk, "pos_mul": pos_mul}), chunks))
    sym = pl.DataFrame([r for rows in found for r in rows], schema={"id": pl.String, "sym": pl.String})
    placed = pl.DataFrame({"id": ids}).with_row_index("place").join(sym, on="id", how="left")
    return placed.sort(pl.col("sym").is_null(), "sym", "place")["id"]


class RandomCandidates:
    """Seeded uniform samples of patents granted before a date (for the random strategies).

    Holds the patents as a date-sorted, fixed-width bytes array of ids and their dates as day numbers,
    not Python objects: a full-size graph has millions. (A Polars gather per anchor cost two thirds of
    the sampling time; indexing a numpy array costs a few microseconds.)
    """

    def __init__(self, table: pl.DataFrame, seed: int, k: int) -> None:
        t = table.sort("date", "id")
        width = max(1, t.select(pl.col("id").str.len_bytes().max()).item() or 1)
        self.ids = np.empty(t.height, dtype=f"S{width}")
        for start in range(0, t.height, 1_000_000):  # in slices: no list of every id at once
            chunk = t["id"].slice(start, 1_000_000).to_list()
            self.ids[start:start + len(chunk)] = chunk
        self.days = t["date"].str.to_date().cast(pl.Int32).to_numpy()
        self.seed = seed
        self.n = 4 * k + 16

    def sample(self, anchor_id: str, anchor_date: str) -> list[str]:
        day = (date.fromisoformat(anchor_date) - date(1970, 1, 1)).days
        # An np.int32 needle: a Python int makes numpy cast the whole date column to int64 on every call
        # (a 9M-patent graph then spends its mining time copying that column, not in Neo4j).
        earlier = int(np.searchsorted(self.days, np.int32(day), side="left"))
        if earlier == 0:
            return []
        digest = hashlib.sha256(f"{self.seed}:{anchor_id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        picks = rng.choice(earlier, size=min(self.n, earlier), replace=False)
        return [i.decode() for i in self.ids[picks].tolist()]


def read_first_passing(graph: Graph, body: str, params: dict[str, Any], rows: list[dict[str, Any]],
                       k: int) -> list[dict[str, Any]]:
    """Run a query that keeps, per anchor, the first ``k`` of its ordered ``cands`` that pass (random@v1/v2)
    with each list cut to its first ``k + 5``; only the anchors left short of ``k`` are asked again with
    the whole list. The rows are those of one read with whole lists: the first ``k`` that pass in a list
    are the first ``k`` that pass in any prefix holding them. Random candidates seldom fail (few patents
    are within two hops of an anchor), so this spares the server most of the ``4k + 16`` look-ups.
    """
    head = k + 5
    found = graph.read(body, {**params, "rows": [{"id": r["id"], "cands": r["cands"][:head]} for r in rows]})
    whole = {r["id"]: r for r in rows if len(r["cands"]) > head}
    again = [whole[f["anchor_id"]] for f in found if len(f["negative_ids"]) < k and f["anchor_id"] in whole]
    if again:
        redone = {f["anchor_id"]: f for f in graph.read(body, {**params, "rows": again})}
        found = [redone.get(f["anchor_id"], f) for f in found]
    return found


@dataclass
class _Plan:
    """The anchors in batch order (id and date) and the batch size: batch ``i`` is a slice of it."""

    order: pl.DataFrame
    batch_size: int

    @property
    def batches(self) -> int:
        return -(-self.order.height // self.batch_size)

    def batch(self, i: int) -> pl.DataFrame:
        return self.order.slice(i * self.batch_size, self.batch_size)

    def digest(self, graph_counts: dict[str, int]) -> str:
        h = hashlib.sha256(json.dumps({"batch_size": self.batch_size, "graph": graph_counts}, sort_keys=True).encode())
        ids = self.order["id"]
        for start in range(0, len(ids), 100_000):
            h.update(b"\n" + "\n".join(ids.slice(start, 100_000).to_list()).encode())
        return h.hexdigest()


def _check_plan(parts: Path, plan: _Plan, graph_counts: dict[str, int]) -> None:
    """Keep the parts of an interrupted run only if they belong to the same batches of the same anchors
    on a graph with the same counts.

    The options alone do not say that: the graph may have been re-imported between the two runs.
    Parts of another plan are removed, so the run starts clean instead of mixing two graphs.
    """
    digest = plan.digest(graph_counts)
    marker = parts / "plan.sha256"
    if marker.exists() and marker.read_text() != digest:
        for stale in parts.glob("part-*.parquet"):
            stale.unlink()
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(digest)
    tmp.replace(marker)


def _prepare(out_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Set ``out_dir`` up for a run; returns the finished dataset's description when there is nothing to do."""
    parts = out_dir / "parts"
    state = out_dir / ".mine-state.json"
    done = out_dir / "dataset.json"
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("fingerprint") == fingerprint and not overwrite:
            return dict(previous)
        if not overwrite:
            raise OutputExistsError(f"{out_dir} holds a dataset mined with other settings "
                                    f"({previous.get('query', {}).get('ref')}); pass --overwrite to replace it or "
                                    "choose another --out.")
    started = any(parts.glob("part-*.parquet"))  # a run that stopped before its first batch left nothing to keep
    if state.exists() and started and not overwrite and json.loads(state.read_text()) != fingerprint:
        raise OutputExistsError(f"{out_dir} holds an unfinished run with other settings; rerun it with the "
                                "same options to resume, or pass --overwrite to start again.")
    if overwrite:
        done.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob("*.tmp"):
        stale.unlink()
    state.write_text(json.dumps(fingerprint, indent=2))
    return None


def mine(graph: Graph, out_dir: Path, options: MineOptions,
         progress: Callable[[int, int], None] | None = None,
         stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Mine ``options.strategy`` into ``out_dir``; returns the dataset description (dataset.json).

    ``progress(done, total)`` is called after every batch, ``stage(what)`` when a phase starts
    (listing anchors, ordering them, mining, writing the files): the phases before and after the
    batches take minutes on a full-size graph.
    """
    from patentminer.dataset.assemble import write_dataset

    options.validate()
    strategy, query = resolve_strategy(options.strategy)
    if not strategy.levels and options.level != "subgroup":
        raise ConfigError(f"--level applies to the cpc-distance strategy only, not {strategy.name}.")
    registry = Registry.load()
    anchors_query = registry.checked("anchors")
    started = time.monotonic()
    timings: dict[str, float] = {}
    embeddings = None
    if strategy.takes == "knn":
        from patentminer.training.embed import Embeddings

        embeddings = Embeddings.open(Path(str(options.embeddings)))
    fingerprint = options.fingerprint(query, strategy, embeddings.info["fingerprint"] if embeddings else None)
    finished = _prepare(out_dir, fingerprint, options.overwrite)
    if finished is not None:
        return finished
    parts = out_dir / "parts"

    say = stage or (lambda _what: None)
    say("listing anchors")
    t0 = time.monotonic()
    graph_counts = check_graph(graph)
    table = list_patents(graph, anchors_query)
    anchors, test_from = split_anchors(table, options, strategy.needs)
    timings["anchors"] = round(time.monotonic() - t0, 2)

    order = store_order(anchors).select("id", "date")
    params: dict[str, Any] = {} if strategy.takes == "knn" else {"k": options.negatives}
    params |= {name: multiplier(options.seed, _SALTS[name]) for name in strategy.seeds}
    knn = None
    if embeddings is not None:
        from patentminer.cypher.knn import KnnMiner

        knn = KnnMiner(graph, embeddings, query, options, params["pos_mul"])
        knn.check(table)
        order = anchors.sort("date", "id").select("id", "date")  # a batch then searches one date range
    if strategy.levels:
        params["level"] = options.level
    if options.level in strategy.positive_order:
        say(f"ordering {order.height:,} anchors by their positive's CPC symbol")
        t0 = time.monotonic()
        ids = positive_order(graph, order["id"], params["pos_mul"], options.workers)
        order = pl.DataFrame({"id": ids}).join(order, on="id", how="left", maintain_order="left")
        timings["order"] = round(time.monotonic() - t0, 2)
    plan = _Plan(order, options.batch_size)
    _check_plan(parts, plan, graph_counts)
    todo = [i for i in range(plan.batches) if not (parts / f"part-{i:06d}.parquet").exists()]
    mined_now = sum(plan.batch(i).height for i in todo)
    sampler = RandomCandidates(table, options.seed, options.negatives) if strategy.samples(options.level) else None

    def run_batch(i: int) -> None:
        batch = plan.batch(i)
        if knn is not None:
            df = knn.run(batch)
        else:
            if strategy.name == "random" and sampler is not None:
                rows = [{"id": a, "cands": sampler.sample(a, d)} for a, d in batch.iter_rows()]
                found = read_first_passing(graph, query.body, params, rows, options.negatives)
            elif strategy.takes == "rows":
                found = graph.read(query.body, {**params, "rows": [
                    {"id": a, "cands": sampler.sample(a, d) if sampler else []} for a, d in batch.iter_rows()]})
            else:
                found = graph.read(query.body, {**params, "ids": batch["id"].to_list()})
            df = pl.DataFrame(found, schema=PART_SCHEMA)
        target = parts / f"part-{i:06d}.parquet"
        tmp = target.with_suffix(".tmp")
        df.write_parquet(tmp)
        tmp.replace(target)

    say(f"mining {query.ref}")
    t0 = time.monotonic()
    _run_batches(run_batch, todo, plan.batches, options.workers, progress)
    timings["mine"] = round(time.monotonic() - t0, 2)

    knn_info = None
    if knn is not None and embeddings is not None:
        from patentminer.cypher.knn import summary

        knn_info = summary(sorted(parts.glob("part-*.parquet")), embeddings, options)
    say("writing splits, texts and the benchmark")
    t0 = time.monotonic()
    result = write_dataset(graph, out_dir, parts, anchors, table, options, test_from, say)
    timings["assemble"] = round(time.monotonic() - t0, 2)
    timings["total"] = round(time.monotonic() - started, 2)
    mined_seconds = (timings["mine"] + timings.get("order", 0.0)) or 1e-9  # the ordering is part of mining
    provenance = {"strategy": query.provenance(), "anchors": anchors_query.provenance(), **result.pop("queries")}
    if options.level in strategy.positive_order:
        provenance["positive-cpc"] = registry.checked("positive-cpc").provenance()
    info = {
        "format": result.pop("format"),
        "query": {"name": query.name, "version": query.version, "ref": query.ref, "sha256": query.sha256},
        "queries": provenance,
        "parameters": {k: v for k, v in asdict(options).items() if k != "overwrite"},
        "seed": options.seed,
        "fingerprint": fingerprint,
        "test_from": test_from,
        "graph": graph_counts,
        **result,
        **({"knn": knn_info} if knn_info else {}),
        # A resumed run mined only the batches it found missing; its rate is over those anchors.
        "anchors_per_s": round(mined_now / mined_seconds, 1) if mined_now else None,
        "resumed": {"batches_found": plan.batches - len(todo), "anchors_mined_now": mined_now}
        if len(todo) < plan.batches else None,
        "timings_s": timings,
    }
    done = out_dir / "dataset.json"
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(done)
    shutil.rmtree(parts, ignore_errors=True)
    (out_dir / ".mine-state.json").unlink(missing_ok=True)
    return info


def _run_batches(run_batch: Callable[[int], None], todo: list[int], total: int, workers: int,
                 progress: Callable[[int, int], None] | None) -> None:
    """Run ``run_batch`` over ``todo`` in ``workers`` threads, reporting progress; the first error stops it."""
    finished = total - len(todo)
    if progress:
        progress(finished, total)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_batch, i) for i in todo}
        try:
            while futures:
                completed, futures = wait(futures, return_when=FIRST_COMPLETED)
                for f in completed:
                    f.result()
                    finished += 1
                if progress:
                    progress(finished, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
