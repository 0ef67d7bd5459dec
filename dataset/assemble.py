"""Mined parts -> a dataset: the splits, the text store and the bounded, seeded benchmark.

Rows name patents by id; each patent's text is stored once, in ``texts.arrow``, instead of five
times per row (a full-dump dataset has millions of rows). The benchmark is bounded whatever the
graph's size: a seeded sample of test queries, a corpus of their relevant patents plus seeded
distractors, and a seeded sample of held-out patents (granted on or after the test date, so in no
training row) for kNN CPC accuracy. Data without citations gets a CPC retrieval benchmark instead
(query: a held-out patent; relevant: the held-out patents sharing its first CPC subgroup).

Example::

    info = write_dataset(graph, out_dir, parts, anchors, patents, options, test_from, print)
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from patentminer.cypher.connection import Graph
from patentminer.cypher.registry import Registry
from patentminer.errors import GraphError

if TYPE_CHECKING:
    from patentminer.cypher.mining import MineOptions

FORMAT = 2
#: Rows per record batch of texts.arrow (row r lives in batch r // TEXT_BATCH); recorded in the file's
#: schema metadata, which readers go by.
TEXT_BATCH = 65_536
TEXT_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.large_string())])
_FETCH = 5_000


class ChunkedParquet:
    """A Parquet file written a frame at a time under a temporary name, renamed on ``close``.

    Example::

        with ChunkedParquet(Path("train.parquet")) as w:
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

    def __enter__(self) -> ChunkedParquet:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif self.writer is not None:  # an interrupted file keeps its temporary name
            self.writer.close()


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    with ChunkedParquet(path) as writer:
        writer.write(df)


def template_expr(template: str) -> pl.Expr:
    """The mining template (``{title} [SEP] {abstract}``) as a Polars expression over title and abstract."""
    pieces: list[pl.Expr] = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        if literal:
            pieces.append(pl.lit(literal))
        if field is not None:
            pieces.append(pl.col(field))
    return pl.concat_str(pieces or [pl.lit("")]).alias("text")


_TEXT_COLUMNS = {"id": pl.String, "title": pl.String, "abstract": pl.String, "cpc": pl.String}


class TextFetcher:
    """Texts (by the template) and first CPC subgroups of patents, fetched with the ``texts`` query in
    chunks over ``workers`` sessions, in the order asked."""

    def __init__(self, graph: Graph, template: str, workers: int) -> None:
        self.graph = graph
        self.template = template_expr(template)
        self.workers = workers
        self.query = Registry.load().checked("texts")

    def _chunk(self, ids: list[str], with_cpc: bool) -> pl.DataFrame:
        rows = self.graph.read_table(self.query.body, _TEXT_COLUMNS, {"ids": ids, "with_cpc": with_cpc})
        found = rows.select("id", self.template, "cpc")
        return pl.DataFrame({"id": ids}, schema={"id": pl.String}).join(
            found, on="id", how="left", maintain_order="left").with_columns(pl.col("text").fill_null(""))

    def chunks(self, ids: pl.Series, with_cpc: bool = False) -> Iterator[pl.DataFrame]:
        """Frames of ``id, text, cpc`` (cpc null without ``with_cpc``), ``_FETCH`` ids each, in order."""
        slices = (ids.slice(i, _FETCH).to_list() for i in range(0, len(ids), _FETCH))
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            yield from pool.map(lambda chunk: self._chunk(chunk, with_cpc), slices)

    def frame(self, ids: pl.Series, with_cpc: bool = False) -> pl.DataFrame:
        parts = list(self.chunks(ids, with_cpc))
        return pl.concat(parts) if parts else pl.DataFrame(schema={"id": pl.String, "text": pl.String,
                                                                    "cpc": pl.String})


#: Above this share of the graph's patents, a dataset's texts are read by one scan of every patent
#: (``all-texts``) instead of by id in chunks (``texts``): a scan streams them in store order.
SCAN_SHARE = 0.3


def scanned_texts(graph: Graph, template: str, keep: pl.Series) -> Iterator[pl.DataFrame]:
    """Frames of ``id, text`` for the patents in ``keep``, from one scan of every patent, in store order."""
    body = Registry.load().checked("all-texts").body
    wanted = keep.implode()
    for chunk in graph.stream_table(body, {"id": pl.String, "title": pl.String, "abstract": pl.String},
                                    chunk_rows=50_000):
        yield chunk.filter(pl.col("id").is_in(wanted)).select("id", template_expr(template))


def write_texts(chunks: Iterable[pl.DataFrame], path: Path) -> int:
    """``texts.arrow`` from frames of ``id, text``, in record batches of ``TEXT_BATCH`` rows; returns the rows."""
    tmp = path.with_name(path.name + ".tmp")
    size = TEXT_BATCH
    schema = TEXT_SCHEMA.with_metadata({"rows_per_batch": str(size)})
    pending: list[pl.DataFrame] = []
    held = 0
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        def flush(frames: list[pl.DataFrame]) -> None:
            table = pl.concat(frames).select("id", "text").to_arrow().cast(TEXT_SCHEMA)
            writer.write_batch(table.combine_chunks().to_batches(max_chunksize=size)[0])

        total = 0
        for chunk in chunks:
            pending.append(chunk)
            total += chunk.height
            held += chunk.height
            while held >= size:
                merged = pl.concat(pending)
                flush([merged.head(size)])
                rest = merged.slice(size)
                pending, held = [rest], rest.height
        if held:
            flush(pending)
    tmp.replace(path)
    return total


def write_dataset(graph: Graph, out_dir: Path, parts: Path, anchors: pl.DataFrame, patents: pl.DataFrame,
                  options: MineOptions, test_from: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Splits, ``texts.arrow`` and ``eval/`` from the mined parts; returns what ``dataset.json`` records of them.

    ``anchors``: the eligible anchors with their split; ``patents``: every dated patent (id, date, rk).
    """
    k = options.negatives
    files = sorted(parts.glob("part-*.parquet"))
    mined = (pl.read_parquet(files) if files else pl.DataFrame(schema={
        "anchor_id": pl.String, "positive_id": pl.String, "negative_ids": pl.List(pl.String),
        "level": pl.String})).sort("anchor_id")
    skipped = {
        "no positive": anchors.height - mined.height,
        f"fewer than {k} negatives": mined.filter(pl.col("negative_ids").list.len() < k).height,
    }
    full = mined.filter(pl.col("negative_ids").list.len() >= k).join(
        anchors.select(pl.col("id").alias("anchor_id"), "split"), on="anchor_id", how="left")
    del mined
    if full.is_empty():
        raise GraphError(f"no anchor has {k} negatives with this strategy; lower --negatives (anchors skipped: "
                         f"{skipped}).")
    neg_cols = [f"negative_{i + 1}_id" for i in range(k)]
    full = full.with_columns([pl.col("negative_ids").list.get(i).alias(c) for i, c in enumerate(neg_cols)]).drop(
        "negative_ids")
    id_cols = ["anchor_id", "positive_id", *neg_cols]
    counts: dict[str, int] = {}
    for split in ("train", "dev", "test"):
        part = full.filter(pl.col("split") == split).select(*id_cols, "level")
        counts[split] = part.height
        write_parquet(part, out_dir / f"{split}.parquet")
    levels = dict(sorted(full.group_by("level").len().iter_rows()))

    fetcher = TextFetcher(graph, options.template, options.workers)
    needed = pl.concat([full[c] for c in id_cols]).unique().sort()
    say(f"writing the texts of {len(needed):,} patents")
    scan = len(needed) > SCAN_SHARE * patents.height
    texts = scanned_texts(graph, options.template, needed) if scan else fetcher.chunks(needed)
    n_texts = write_texts(texts, out_dir / "texts.arrow")
    if n_texts != len(needed):
        raise GraphError(f"the graph returned texts for {n_texts:,} of the {len(needed):,} patents the dataset "
                         "names; was it changed while mining? Mine again.")
    del needed
    say("sampling the benchmark")
    # Queries come from the eligible test anchors, not from the mined ones: every strategy mined from the same
    # graph with the same seed then shares one benchmark, which paired comparisons need.
    test_anchors = anchors.filter(pl.col("split") == "test")["id"]
    bench = write_benchmark(graph, fetcher, out_dir / "eval", test_anchors, patents, options, test_from)
    registry = Registry.load()
    return {"format": FORMAT, "rows": counts,
            "anchors": {"eligible": anchors.height, "mined": full.height, "skipped": skipped},
            "levels": levels, "texts": n_texts, "eval": bench,
            "queries": {"texts": (registry.checked("all-texts") if scan else fetcher.query).provenance(),
                        "eval-qrels": registry.checked("eval-qrels").provenance()}}


def _seeded(frame: pl.DataFrame, seed: int, salt: str) -> pl.DataFrame:
    from patentminer.cypher.mining import seeded_key

    return frame.with_columns(seeded_key(seed, salt).alias("_k")).sort("_k", "id").drop("_k")


def _qrels(graph: Graph, ids: pl.Series) -> pl.DataFrame:
    body = Registry.load().checked("eval-qrels").body
    frames = [graph.read_table(body, {"query_id": pl.String, "corpus_id": pl.String},
                               {"ids": ids.slice(i, _FETCH).to_list()}) for i in range(0, len(ids), _FETCH)]
    rows = pl.concat(frames) if frames else pl.DataFrame(schema={"query_id": pl.String, "corpus_id": pl.String})
    return rows.unique().sort("query_id", "corpus_id")


def _heldout(fetcher: TextFetcher, patents: pl.DataFrame, seed: int, test_from: str, n: int) -> pl.DataFrame:
    """The first ``n`` patents with a CPC symbol, in seeded order, of those granted on or after ``test_from``."""
    order = _seeded(patents.filter(pl.col("date") >= test_from), seed, "heldout")["id"]
    found: list[pl.DataFrame] = []
    have = 0
    for start in range(0, len(order), n):  # a few patents have no CPC symbol: fetch until n have one
        rows = fetcher.frame(order.slice(start, n), with_cpc=True).filter(pl.col("cpc").is_not_null())
        found.append(rows)
        have += rows.height
        if have >= n:
            break
    if not found:
        return pl.DataFrame(schema={"id": pl.String, "text": pl.String, "cpc": pl.String})
    return pl.concat(found).head(n)


def write_benchmark(graph: Graph, fetcher: TextFetcher, ev: Path, test_anchors: pl.Series, patents: pl.DataFrame,
                    options: MineOptions, test_from: str) -> dict[str, Any]:
    """eval/queries, corpus, qrels and heldout.parquet; returns their description for dataset.json."""
    seed = options.seed
    pool = patents.filter(pl.col("id").is_in(test_anchors.implode()))
    sampled = _seeded(pool, seed, "eval-queries").head(options.eval_queries)["id"]
    qrels = _qrels(graph, sampled)
    info: dict[str, Any] = {"test_from": test_from, "eval_queries": options.eval_queries,
                            "corpus_size": options.corpus_size, "heldout_size": options.heldout_size,
                            "test_anchors": len(test_anchors)}
    if qrels.height:
        relevant = qrels["corpus_id"].unique()
        n_distract = max(0, options.corpus_size - len(relevant))
        earlier = patents.filter((pl.col("date") < test_from) & ~pl.col("id").is_in(relevant.implode()))
        distract = _seeded(earlier, seed, "corpus").head(n_distract)["id"]
        corpus = fetcher.frame(pl.concat([relevant, distract]).sort(), with_cpc=True).with_columns(
            pl.col("cpc").fill_null(""))
        queries = fetcher.frame(qrels["query_id"].unique().sort()).select(pl.col("id").alias("query_id"), "text")
        heldout = _heldout(fetcher, patents, seed, test_from, options.heldout_size)
        info |= {"kind": "citation", "relevant": len(relevant), "distractors": len(distract)}
    else:
        held = _heldout(fetcher, patents, seed, test_from, options.corpus_size)
        shared = held.group_by("cpc").len().filter(pl.col("len") >= 2)
        candidates = patents.filter(pl.col("id").is_in(held.join(shared, on="cpc", how="semi")["id"].implode()))
        chosen = _seeded(candidates, seed, "eval-queries").head(options.eval_queries)["id"]
        picked = held.filter(pl.col("id").is_in(chosen.implode()))
        qrels = picked.select(pl.col("id").alias("query_id"), "cpc").join(
            held.select(pl.col("id").alias("corpus_id"), "cpc"), on="cpc").filter(
            pl.col("query_id") != pl.col("corpus_id")).select("query_id", "corpus_id").sort("query_id", "corpus_id")
        queries = picked.select(pl.col("id").alias("query_id"), "text").sort("query_id")
        corpus = held.sort("id")
        heldout = held.head(options.heldout_size)
        info |= {"kind": "cpc", "relevant": qrels["corpus_id"].n_unique(), "distractors": 0}
    corpus = corpus.rename({"id": "corpus_id"}).select("corpus_id", "text", "cpc")
    qrels = qrels.with_columns(pl.lit(1).alias("score"))
    write_parquet(queries, ev / "queries.parquet")
    write_parquet(corpus, ev / "corpus.parquet")
    write_parquet(qrels, ev / "qrels.parquet")
    write_parquet(heldout.select("id", "text", "cpc"), ev / "heldout.parquet")
    return info | {"queries": queries.height, "corpus": corpus.height, "qrels": qrels.height,
                   "heldout": heldout.height}
