"""PatentsView tables -> the CSV files ``neo4j-admin database import full`` loads.

Streaming: the citation and CPC tables pass through in batches, in source order, straight
to their CSVs; memory is a few batches plus the patent ids, whatever the table size.
Ids are compared as exact integer keys (etl/ids.py). Repeated pairs are collapsed
within the rows of one citing patent, which PatentsView keeps together; a table that
is not grouped that way is detected and redone through hash partitions on disk. The
patent table takes two passes: ids and flags first (first row wins, rejects), then, once
the CPC phase has ranked every patent, the kept rows and the abstracts are spilled by rank
and joined one rank range at a time. Outputs are built in ``OUT_DIR/.etl-tmp``
and moved into place when complete, ``manifest.json`` last.

Example::

    manifest = run_etl(Path("data/patentsview"), Path("data/import"), EtlOptions())
    print(manifest["graph"]["nodes"]["Patent"])
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from patentminer import __version__
from patentminer.errors import ConfigError, InputError, OutputExistsError
from patentminer.etl.ids import IdIndex, with_fast_key
from patentminer.etl.sources import REASON, ROW, Table, file_digest, find_sources

#: Version of the import-CSV layout and graph model; bump when either changes.
IMPORT_FORMAT = 1
SCHEMA_NAME = "schema"
_DATE_RE = r"^(1[7-9]\d\d|20\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
_BUCKET_BYTES = 256 << 20
#: Bytes of CSV per range of the spills that put classified_as.csv and patents.csv in CPC order.
#: Two ranges are mapped at a time (one read, one written); 32 MB keeps the text phase's peak where
#: it was when ranges of 64 MB were read into memory instead of mapped.
_CLUSTER_BYTES = 32 << 20

#: Output files the ETL owns in OUT_DIR (data file, header line).
#: Patent columns lead with rk, date and id: neo4j-admin import stores properties in column order and a
#: read walks the property chain from its start, so the three that mining reads for every candidate
#: come first (citation-cpc 1.3x faster on the 1M graph, benchmarks/RESULTS.md).
NODE_FILES: dict[str, tuple[str, str]] = {
    "Patent": ("patents.csv", "rk:long,date:date,id:ID(Patent),year:int,type,kind,num_claims:int,title,abstract"),
    "CPCSection": ("cpc_sections.csv", "code:ID(CPCSection)"),
    "CPCClass": ("cpc_classes.csv", "code:ID(CPCClass),title"),
    "CPCSubclass": ("cpc_subclasses.csv", "code:ID(CPCSubclass),title"),
    "CPCGroup": ("cpc_groups.csv", "code:ID(CPCGroup),title"),
    "CPCSubgroup": ("cpc_subgroups.csv", "code:ID(CPCSubgroup),title"),
}
REL_FILES: dict[str, list[tuple[str, str]]] = {
    "CITES": [("cites.csv", ":START_ID(Patent),:END_ID(Patent),sequence:int,category,date:date")],
    "CLASSIFIED_AS": [("classified_as.csv", ":START_ID(Patent),:END_ID(CPCSubgroup),sequence:int,type")],
    "PART_OF": [
        ("part_of_class.csv", ":START_ID(CPCClass),:END_ID(CPCSection)"),
        ("part_of_subclass.csv", ":START_ID(CPCSubclass),:END_ID(CPCClass)"),
        ("part_of_group.csv", ":START_ID(CPCGroup),:END_ID(CPCSubclass)"),
        ("part_of_subgroup.csv", ":START_ID(CPCSubgroup),:END_ID(CPCGroup)"),
    ],
}
OWNED = [f for f, _ in NODE_FILES.values()] + [f for fs in REL_FILES.values() for f, _ in fs] + ["rejects.tsv"]


@dataclass(frozen=True)
class EtlOptions:
    keep_withdrawn: bool = False
    max_reject_rate: float = 0.001
    overwrite: bool = False

    def validate(self) -> None:
        if not 0 <= self.max_reject_rate <= 1:
            raise ConfigError(f"--max-reject-rate {self.max_reject_rate} is not a fraction; use a value in [0, 1].")


Progress = Callable[[str], None]


def header_name(data_file: str) -> str:
    return data_file.replace(".csv", ".header.csv")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Check OUT_DIR and return a clean temporary directory inside it."""
    manifest = out_dir / "manifest.json"
    if manifest.exists():
        if not overwrite:
            raise OutputExistsError(f"{out_dir} already holds an ETL run (manifest.json); pass --overwrite to "
                                    "replace it or choose another OUT_DIR.")
        manifest.unlink()  # first: an interrupted overwrite must not look finished
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        for f in (out_dir / name, out_dir / header_name(name)):
            f.unlink(missing_ok=True)
    tmp = out_dir / ".etl-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "work").mkdir(parents=True)
    return tmp


#: Bytes of source file each Polars CSV reader task takes at once. Polars' default holds ~390 MB
#: while streaming the 1M-patent citation table; 4 MiB holds ~180 MB at the same speed.
_CSV_CHUNK_BYTES = 4 << 20


@contextmanager
def _csv_chunks() -> Iterator[None]:
    """Polars reads POLARS_CSV_CHUNK_SIZE when a query starts; a value the user set is kept."""
    if "POLARS_CSV_CHUNK_SIZE" in os.environ:
        yield
        return
    os.environ["POLARS_CSV_CHUNK_SIZE"] = str(_CSV_CHUNK_BYTES)
    try:
        yield
    finally:
        os.environ.pop("POLARS_CSV_CHUNK_SIZE", None)


def run_etl(source_dir: Path, out_dir: Path, options: EtlOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Convert the PatentsView tables in ``source_dir`` into import CSVs in ``out_dir``.

    Returns the manifest (also written to ``out_dir/manifest.json``). Raises InputError
    for unusable input and when rejects exceed ``options.max_reject_rate`` (after
    writing ``rejects.tsv``), OutputExistsError when ``out_dir`` holds another run.
    """
    with _csv_chunks():
        return _run_etl(source_dir, out_dir, options, progress)


def _run_etl(source_dir: Path, out_dir: Path, options: EtlOptions, progress: Progress | None) -> dict[str, Any]:
    options.validate()
    say = progress or (lambda _m: None)
    started = time.monotonic()
    sources = find_sources(source_dir)
    tmp = prepare_out_dir(out_dir, options.overwrite)
    work = tmp / "work"
    # SHA-256 of 1.4 GB is a second of CPU: it runs beside the parsing instead of before it.
    digests = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etl-digest")
    hashes = {name: digests.submit(file_digest, src.path) for name, src in sources.items()}
    timings: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    rejects: list[pl.DataFrame] = []

    def timed(stage_name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        result = fn()
        timings[stage_name] = round(time.monotonic() - t0, 2)
        say(f"{stage_name}: {timings[stage_name]:.1f}s")
        return result

    try:
        tables = {name: Table(src, work) for name, src in sources.items()}
        for name, t in tables.items():
            t.newlines = lambda f=hashes[name]: f.result()[1]
        kept = timed("patents", lambda: _patents(tables, options, counts, rejects))
        index = IdIndex.build(kept.rows["id"])
        titles = _cpc_titles(tables, counts, rejects)
        timed("citations", lambda: _citations(tables["g_us_patent_citation"], index, tmp, counts, rejects, say))
        cpc = tables["g_cpc_current"]
        enum = timed("cpc symbols", lambda: _symbol_enum(cpc))
        ranked = _RankSpill(work, "classified_as", len(enum.categories), _RankSpill.parts_for(cpc.path.stat().st_size))
        symbols, order = timed("cpc", lambda: _cpc(cpc, index, ranked, enum, counts, rejects, say))
        names = pl.Series(enum.categories)
        timed("cpc order", lambda: ranked.write_csv(tmp / "classified_as.csv", lambda _k, df: df.select(
            "p", names.gather(df["__rank"]).alias("sym"), "seq", "type")))
        timed("patent text", lambda: _write_patents(tables, kept, tmp, work, order, counts, rejects))
        graph_nodes = timed("cpc hierarchy", lambda: _hierarchy(symbols, titles, tmp))
        for t in tables.values():
            t.discard()
        source_info = {name: {"file": src.path.name, "bytes": src.path.stat().st_size,
                              "hash": hashes[name].result()[0]} for name, src in sources.items()}
    finally:
        digests.shutdown(cancel_futures=True)

    all_rejects = pl.concat(rejects) if rejects else pl.DataFrame(
        schema={"source": pl.String, "line": pl.Int64, "reason": pl.String, "key": pl.String})
    all_rejects = all_rejects.sort("source", "line")
    all_rejects.write_csv(tmp / "rejects.tsv", separator="\t")
    rows_read = sum(c.get("rows_read", 0) for c in counts.values())
    rate = all_rejects.height / rows_read if rows_read else 0.0
    shutil.rmtree(work, ignore_errors=True)

    graph = {
        "nodes": {"Patent": counts["patents"]["written"], **graph_nodes},
        "relationships": {
            "CITES": counts["citations"]["written"],
            "CLASSIFIED_AS": counts["cpc"]["written"],
            "PART_OF": graph_nodes["CPCClass"] + graph_nodes["CPCSubclass"] + graph_nodes["CPCGroup"]
            + graph_nodes["CPCSubgroup"],
        },
    }
    manifest = {
        "patentminer_version": __version__,
        "import_format": IMPORT_FORMAT,
        "schema": {"name": SCHEMA_NAME, "version": _schema_version()},
        "options": asdict(options),
        "sources": source_info,
        "counts": counts,
        "rejects": {"rows": all_rejects.height, "rate": round(rate, 6), "file": "rejects.tsv",
                    "by_reason": dict(sorted(
                        all_rejects.group_by("reason").len().iter_rows(), key=lambda r: -r[1]))},
        "graph": graph,
        "files": {
            "nodes": {label: [header_name(f), f] for label, (f, _) in NODE_FILES.items()},
            "relationships": {t: [[header_name(f), f] for f, _ in fs] for t, fs in REL_FILES.items()},
        },
        "timings_s": {**timings, "total": round(time.monotonic() - started, 2)},
    }
    if rate > options.max_reject_rate:
        (tmp / "rejects.tsv").replace(out_dir / "rejects.tsv")
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(
            f"{all_rejects.height:,} of {rows_read:,} rows ({rate:.4%}) were rejected, above --max-reject-rate "
            f"{options.max_reject_rate}; see {out_dir / 'rejects.tsv'} (raise the rate to accept them)."
        )
    for _label, (f, head) in NODE_FILES.items():
        (tmp / header_name(f)).write_text(head + "\n")
    for fs in REL_FILES.values():
        for f, head in fs:
            (tmp / header_name(f)).write_text(head + "\n")
    for name in OWNED:
        for f in (name, header_name(name)):
            if (tmp / f).exists():
                (tmp / f).replace(out_dir / f)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (tmp / "manifest.json").replace(out_dir / "manifest.json")
    shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _schema_version() -> int:
    from patentminer.cypher.registry import Registry

    return Registry.load().latest(SCHEMA_NAME).version


def _reject_frame(table: Table, bad: pl.DataFrame, key: str) -> pl.DataFrame:
    """Rejected rows (``__row``, ``__reason``, ``key``) as rejects.tsv rows with their physical lines."""
    return pl.DataFrame({"source": [table.source.path.name] * bad.height, "line": table.line_numbers(bad[ROW]),
                         "reason": bad[REASON], "key": bad[key].fill_null("")})


def _id_hash(ids: pl.Series) -> pl.Series:
    return ids.hash(seed=3)


def _first_rows(table: Table, columns: list[pl.Expr]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One pass over a patent-keyed table: (the first parseable row of each id, the rejected rows).

    Only ids, flags and row numbers are held, never the text columns.
    """
    meta = table.run(lambda t: t.scan().select(ROW, REASON, "patent_id", *columns).collect(engine="streaming"))
    table.rows = meta.height
    if not meta[ROW].is_sorted():
        meta = meta.sort(ROW)
    good = meta[REASON].is_null()
    bad = meta.filter(~good)
    # First row per id, found on 64-bit hashes of the ids: a hash table of 9M strings (a group_by)
    # peaks at ~4x the memory. Rows whose hash was seen before are then checked against the strings.
    h = _id_hash(meta["patent_id"])
    first = pl.select(pl.when(good).then(h).is_first_distinct() & good).to_series()
    repeats = h.filter(good & ~first)
    if repeats.len():
        same_hash = meta.select("patent_id", h.alias("__h")).filter(good & h.is_in(repeats.implode()))
        if same_hash.group_by("__h").agg(pl.col("patent_id").n_unique().alias("n"))["n"].max() != 1:
            # Two ids share a hash (about one chance in 10^6 per 9M-patent run): the exact, costlier way.
            ids = meta.filter(good)
            winners = ids.group_by("patent_id").agg(pl.col(ROW).min())[ROW]
            first = meta[ROW].is_in(winners.implode()) & good
    return meta.filter(first).drop(REASON).rename({"patent_id": "id"}), bad


_PATENT_COLUMNS = ["rk", "date", "id", "year", "type", "kind", "num_claims", "title", "abstract"]


@dataclass(frozen=True)
class _KeptPatents:
    """The patent rows that become nodes: their ids and source rows (``__row``, ``id``), in source order.

    Their other columns are read again when patents.csv is written (after the CPC phase, whose
    first symbol per patent decides the file order): holding 9M titles until then would make
    memory grow with the patent table.
    """

    rows: pl.DataFrame
    legacy: bool
    columns: list[pl.Expr]


def _patents(tables: dict[str, Table], options: EtlOptions, counts: dict[str, dict[str, int]],
             rejects: list[pl.DataFrame]) -> _KeptPatents:
    """First row per id, withdrawn left out; :func:`_write_patents` writes them with their abstracts."""
    t = tables["g_patent"]
    legacy = "patent_abstract" in t.source.header
    date = pl.col("patent_date").str.strip_chars()
    date_ok = date.str.contains(_DATE_RE).fill_null(False)
    columns = [
        pl.col("patent_title").alias("title"),
        pl.when(date_ok).then(date).alias("date"),
        pl.when(date_ok).then(date.str.slice(0, 4)).alias("year"),
        pl.col("patent_type").alias("type"),
        pl.col("wipo_kind").alias("kind"),
        pl.col("num_claims").alias("num_claims"),
    ]
    flags = [(pl.col("withdrawn") == "1").fill_null(False).alias("wd"), date_ok.alias("date_ok")]
    winners, bad = _first_rows(t, flags)
    if bad.height:
        rejects.append(_reject_frame(t, bad, "patent_id"))
    n_withdrawn = int(winners["wd"].sum())
    kept = winners if options.keep_withdrawn else winners.filter(~pl.col("wd"))
    counts["patents"] = {
        "rows_read": t.rows, "rejected": bad.height, "duplicate_id": t.rows - bad.height - winners.height,
        "withdrawn": n_withdrawn, "withdrawn_dropped": 0 if options.keep_withdrawn else n_withdrawn,
        "bad_date": kept.height - int(kept["date_ok"].sum()), "written": kept.height,
    }
    return _KeptPatents(kept.select(ROW, "id"), legacy, columns)


def _write_patents(tables: dict[str, Table], kept: _KeptPatents, tmp: Path, work: Path, order: _Order,
                   counts: dict[str, dict[str, int]], rejects: list[pl.DataFrame]) -> None:
    """patents.csv in the order of each patent's first CPC symbol (see :class:`_Order`), rows of
    one symbol in g_patent order.

    Each kept patent's line in patents.csv is known before any text is read. The kept g_patent
    rows are read again and spilled by that line, and so are the abstracts (a separate table in
    current releases); each range of lines is then put in order and written. Memory is one range
    plus the ids.
    """
    t = tables["g_patent"]
    expected = t.path.stat().st_size + (tables["g_patent_abstract"].path.stat().st_size if not kept.legacy else 0)
    parts = _RankSpill.parts_for(expected)
    rank = order.patent_rank(kept.rows)
    n = rank.len()
    # By rank, ties in source order ("ordinal"; 2.4x faster than numpy's stable argsort at 3M).
    line = (rank.rank("ordinal") - 1).cast(pl.Int32).to_numpy()  # below 2^31: one line per patent
    # The line and rank key of each source row (-1: not kept), so a batch is placed by a gather; the
    # spill leaves out the rows that are not kept.
    line_of_row = np.full(t.rows, -1, dtype=np.int32)
    line_of_row[kept.rows[ROW].to_numpy()] = line
    rk_of_row = np.zeros(t.rows, dtype=np.int32)
    rk_of_row[kept.rows[ROW].to_numpy()] = rank_keys(kept.rows["id"]).to_numpy()
    rows = _RankSpill(work, "patents", max(n - 1, 0), parts)
    text = [pl.col("patent_abstract").alias("abstract")] if kept.legacy else []
    frame = t.scan().select(ROW, pl.col("patent_id").alias("id"), *kept.columns, *text)
    for b in frame.collect_batches(chunk_size=_TEXT_BATCH):
        source_rows = b[ROW].to_numpy()
        rows.add(b.with_columns(pl.Series("rk", rk_of_row[source_rows]),
                                pl.Series("__rank", line_of_row[source_rows])).drop(ROW))
    del line_of_row, rk_of_row
    if kept.legacy:
        rows.write_csv(tmp / "patents.csv", lambda _k, df: df.select(_PATENT_COLUMNS))
        return
    abstracts = _RankSpill(work, "abstracts", max(n - 1, 0), parts)
    _spill_abstracts(tables["g_patent_abstract"], kept.rows["id"], line, abstracts, counts, rejects)

    def with_abstracts(k: int, df: pl.DataFrame) -> pl.DataFrame:
        # A range holds every line from its first on (each kept patent has a row), so an abstract's
        # place is its line minus the first: a gather instead of a join on the id strings.
        a = abstracts.take(k)
        if a is None:
            return df.with_columns(pl.lit(None, dtype=pl.String).alias("abstract")).select(_PATENT_COLUMNS)
        at = np.full(df.height, -1, dtype=np.int64)
        at[a["__rank"].to_numpy() - int(df["__rank"][0])] = np.arange(a.height)
        place = pl.Series(at)
        return df.with_columns(a["abstract"].gather(pl.select(pl.when(place >= 0).then(place)).to_series())
                               .alias("abstract")).select(_PATENT_COLUMNS)

    rows.write_csv(tmp / "patents.csv", with_abstracts)
    abstracts.remove()


def _sorted_ids(ids: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """(positions that sort ``ids``, the sorted ids), without a copy when ``ids`` is sorted already."""
    if ids.is_sorted():
        return np.arange(ids.len(), dtype=np.uint32), ids
    by_id = ids.arg_sort().to_numpy()
    return by_id, ids.gather(by_id)


def _spill_abstracts(a: Table, ids: pl.Series, line: np.ndarray, spill: _RankSpill,
                     counts: dict[str, dict[str, int]], rejects: list[pl.DataFrame]) -> None:
    """Spill (``abstract``, ``__rank``: the patents.csv line) of the kept patents (``ids``, their
    lines ``line``), streaming g_patent_abstract; the first abstract row of an id wins. Memory is the
    ids plus a batch.
    """
    # Ids are looked up by binary search in the sorted kept ids: a join per batch hashed all 9M
    # kept ids each time (8 s of the 9M text phase); a search over the batch is ~10x cheaper.
    by_id, sorted_ids = _sorted_ids(ids)

    def run(a: Table) -> tuple[int, int, list[pl.DataFrame]]:
        matched = np.zeros(ids.len(), dtype=bool)
        bad_parts: list[pl.DataFrame] = []
        # Ids of abstracts without a kept patent (withdrawn, unknown): few, kept for the duplicate count.
        unmatched: list[pl.Series] = []
        n = repeats = 0
        frame = a.scan().select(ROW, REASON, "patent_id", pl.col("patent_abstract").alias("abstract"))
        spill.reset()
        for b in frame.collect_batches(chunk_size=_TEXT_BATCH):
            n += b.height
            bad = b.filter(pl.col(REASON).is_not_null())
            if bad.height:
                bad_parts.append(bad.select(ROW, REASON, "patent_id"))
            good = b.filter(pl.col(REASON).is_null()).select("patent_id", "abstract")
            batch_ids = good["patent_id"]
            if sorted_ids.len():
                at = np.minimum(sorted_ids.search_sorted(batch_ids).to_numpy(), sorted_ids.len() - 1)
                hit = (sorted_ids.gather(at) == batch_ids).fill_null(False).to_numpy()
            else:
                at, hit = np.zeros(batch_ids.len(), dtype=np.int64), np.zeros(batch_ids.len(), dtype=bool)
            if not hit.all():
                unmatched.append(batch_ids.filter(pl.Series(~hit)))
            pos = by_id[at[hit]]
            # First row of each id within the batch (a sort of the kept positions, cheaper than a
            # unique over the id strings), and only if no earlier batch had that id.
            fresh = np.zeros(pos.size, dtype=bool)
            fresh[np.unique(pos, return_index=True)[1]] = True
            fresh &= ~matched[pos]
            matched[pos] = True
            repeats += int(pos.size - fresh.sum())
            take = np.zeros(hit.size, dtype=bool)  # one filter of the batch, not two
            take[np.flatnonzero(hit)[fresh]] = True
            spill.add(good.select("abstract").filter(pl.Series(take))
                      .with_columns(pl.Series("__rank", line[pos[fresh]])))
        others = pl.concat(unmatched) if unmatched else pl.Series([], dtype=pl.String)
        return n, repeats + others.len() - others.n_unique(), bad_parts

    n, duplicates, bad_parts = a.run(run)
    a.rows = n
    n_bad = sum(b.height for b in bad_parts)
    if bad_parts:
        rejects.append(_reject_frame(a, pl.concat(bad_parts), "patent_id"))
    counts["abstracts"] = {"rows_read": n, "rejected": n_bad, "duplicate_id": duplicates}


#: Offsets that keep rank keys of different id families apart (utility ids stay below 2e8).
_RK_OFFSETS = {"": 0, "D": 200_000_000, "PP": 400_000_000, "RE": 600_000_000}


def rank_key(patent_id: pl.Expr) -> pl.Expr:
    """An integer per patent id (< 2^31 - 1) that mining multiplies by a seed to get seeded orderings.

    Derived from the id alone, so it is the same in every import of the same data.
    """
    digits = patent_id.str.extract(r"(\d+)$").cast(pl.Int64, strict=False).fill_null(0) % 200_000_000
    prefix = patent_id.str.extract(r"^([A-Z]*)").fill_null("")
    offset = prefix.replace_strict(_RK_OFFSETS, default=800_000_000, return_dtype=pl.Int64)
    return (digits + offset + 1).clip(upper_bound=2_147_483_646)


def rank_keys(ids: pl.Series) -> pl.Series:
    """:func:`rank_key` of every id (Int32), the two regular expressions run only on the ids that
    are not plain numbers: for those (over 90%) the key is the number's, plus one (0.5 -> 0.07 s for
    3M ids).
    """
    frame = with_fast_key(pl.LazyFrame({"id": ids}), "id", "__k").with_columns(
        ((pl.col("__k") % 200_000_000) + 1).clip(upper_bound=2_147_483_646).alias("rk")).collect()
    others = frame["__k"].is_null()
    if not others.any():
        return frame["rk"].cast(pl.Int32)
    slow = pl.select(rank_key(pl.lit(ids.filter(others)))).to_series()
    return frame["rk"].scatter(others.arg_true(), slow).cast(pl.Int32)


#: Rows per batch of the streamed relationship tables (memory is a few batches, whatever the table size).
_BATCH = 250_000
#: Rows per batch of the patent and abstract passes (~10x wider than citation rows). 100k: the text phase
#: 0.24 s faster than with 50k at 1M patents (means of 4 runs), same peak, now that only ids are joined.
_TEXT_BATCH = 100_000
_PROGRESS_ROWS = 10_000_000
#: Row status while streaming: kept or rejected (unparseable); other codes are drop reasons.
KEEP, REJECTED = 0, -1
#: Columns every streamed relationship frame carries besides its payload.
_GROUP_HASH, _PAIR_HASH, _STATUS = "__gh", "__ph", "__st"
#: Whether a row is written (False: dropped and counted). Rows are filtered once, when written: a
#: filter per step copied every batch twice (~17 ms of CPU per 250,000 citation rows each).
_KEEP = "__keep"


@dataclass(frozen=True)
class PairSpec:
    """How one relationship table streams: its pair columns, drop reasons by status code, output columns."""

    pair: tuple[str, str]
    drops: dict[int, str]
    out_cols: list[str]


def _status(reason_chain: Any) -> pl.Expr:
    return (pl.when(pl.col(REASON).is_not_null()).then(REJECTED).otherwise(reason_chain)).cast(pl.Int8).alias(_STATUS)


def _with_hashes(frame: pl.LazyFrame, pair: tuple[str, str]) -> pl.LazyFrame:
    """Hashes computed while parsing (on all cores): the start id (runs) and the pair (repeats)."""
    a, b = pair
    return (frame.with_columns(pl.col(a).hash(seed=1).alias(_GROUP_HASH))
            .with_columns((pl.col(_GROUP_HASH) ^ pl.col(b).hash(seed=2)).alias(_PAIR_HASH)))


def _collapse(df: pl.DataFrame, pair: tuple[str, str]) -> tuple[np.ndarray | None, int]:
    """The rows of ``df`` to write: those with ``__keep``, repeated ``pair`` rows collapsed into the
    one with the lowest sequence (then the first source row). None when that is every row.

    The pair hash finds candidates; the exact comparison runs on those alone. Returns (mask,
    rows collapsed).
    """
    keep = df[_KEEP].to_numpy().copy()
    every = bool(keep.all())
    # Sorting the hashes and comparing neighbours is cheaper than a hash table over the batch (only
    # the repeated values are needed, not where they sit); the candidates are then picked by a hash
    # lookup. The low 32 bits are enough to find candidates (a few more per batch, settled exactly
    # below) and sort in 60% of the time of 64 (13 -> 8 ms per 250,000 rows).
    low = (df[_PAIR_HASH].to_numpy() & 0xFFFFFFFF).astype(np.uint32)
    ordered = np.sort(low if every else low[keep])
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return (None if every else keep), 0
    repeated_hashes = pl.Series(ordered[1:][same])
    candidates = df.with_row_index("__pos").filter(
        pl.Series(low).is_in(repeated_hashes.implode()) & pl.Series(keep))
    repeated = candidates.filter(pl.struct(pair).is_duplicated())
    if repeated.is_empty():
        return (None if every else keep), 0
    best = repeated.sort("seq", ROW).unique(subset=list(pair), keep="first")["__pos"]
    losers = repeated["__pos"].filter(~repeated["__pos"].is_in(best.implode())).to_numpy()
    keep[losers] = False
    return keep, losers.size


def _write_grouped(batches: Iterable[pl.DataFrame], pair: tuple[str, str],
                   on_write: Callable[[pl.DataFrame], None]) -> tuple[int, bool]:
    """Collapse repeated pairs batch by batch, the rows of one start id kept together across batches.

    That is exact only when the input is grouped by the start id (PatentsView files are sorted
    by patent_id); the second value says whether it was: every run of one start id must be
    the only one. (Runs are told apart by a 64-bit hash of the id; a collision would only
    merge two runs.) Returns (rows collapsed, grouped).
    """
    carry: pl.DataFrame | None = None
    starts: list[np.ndarray] = []
    repeated = 0

    def flush(df: pl.DataFrame) -> None:
        nonlocal repeated
        gh = df[_GROUP_HASH]
        # Copied out: the filtered Series kept the whole batch's buffers alive, so memory grew with
        # the table (+280 MB over 37M citation rows).
        starts.append(gh.filter(gh.ne_missing(gh.shift(1))).to_numpy().copy())
        keep, n = _collapse(df, pair)
        repeated += n
        on_write(df if keep is None else df.filter(pl.Series(keep)))

    for df in batches:
        if carry is not None:
            df = pl.concat([carry, df])
        if df.is_empty():
            continue
        # The last start id's run is carried into the next batch. Slices, not filters: no copy.
        # (An earlier row of that id, in a table not grouped by it, stays in the body and shows
        # up as a second run, which is what tells such a table apart.)
        gh = df[_GROUP_HASH]
        other = gh.ne(gh[-1]).arg_true()
        cut = int(other[-1]) + 1 if other.len() else 0
        carry = df.slice(cut)
        if cut:
            flush(df.slice(0, cut))
    if carry is not None and carry.height:
        flush(carry)
    runs = pl.Series(np.concatenate(starts) if starts else np.zeros(0, dtype=np.uint64))
    return repeated, runs.n_unique() == runs.len()


def _kept_batches(table: Table, frame: pl.LazyFrame, spec: PairSpec, c: dict[str, int],
                  bad_parts: list[pl.DataFrame], key: str, say: Progress) -> Iterator[pl.DataFrame]:
    """The rows of ``frame`` batch by batch in source order, with ``__keep`` (False: dropped, and
    counted); rejected rows are set aside and left out.

    Dropped rows stay until the rows are written, so a batch is filtered once (see ``_KEEP``);
    they share their start id with the run they sit in, which is what the grouping looks at.
    """
    for b in frame.collect_batches(chunk_size=_BATCH):
        c["rows_read"] += b.height
        if c["rows_read"] // _PROGRESS_ROWS != (c["rows_read"] - b.height) // _PROGRESS_ROWS:
            say(f"{table.source.path.name}: {c['rows_read']:,} rows")
        st = b[_STATUS].to_numpy()
        # A count per status code (REJECTED is -1): a bincount is a quarter of a value_counts.
        for code, n in enumerate(np.bincount(st.astype(np.intp) - REJECTED).tolist(), start=REJECTED):
            if n and code not in (KEEP, REJECTED):
                c[spec.drops[code]] += n
        rows = b.drop(REASON, key, _STATUS)
        rejected = st == REJECTED
        if rejected.any():
            bad_parts.append(b.filter(pl.Series(rejected)).select(ROW, REASON, key))
            rows, st = rows.filter(pl.Series(~rejected)), st[~rejected]
        yield rows.with_columns(pl.Series(_KEEP, st == KEEP))


def _regrouped(table: Table, frame: pl.LazyFrame, spec: PairSpec, key: str, work: Path) -> Iterator[pl.DataFrame]:
    """The kept rows again, for a table not grouped by its start id: hash-partitioned to disk, then
    one partition at a time, sorted by start id and source row. Memory is one partition."""
    n = max(1, math.ceil(table.path.stat().st_size / _BUCKET_BYTES))
    spill = work / f"{table.source.spec.name}.buckets"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    scratch: dict[str, int] = defaultdict(int)
    for i, rows in enumerate(_kept_batches(table, frame, spec, scratch, [], key, lambda _m: None)):
        kept = rows.filter(pl.col(_KEEP))
        parts = kept.with_columns((pl.col(_GROUP_HASH) % n).alias("__bucket")).partition_by("__bucket", as_dict=True)
        for (k,), part in parts.items():
            part.drop("__bucket").write_ipc(spill / f"{k}-{i:08d}.arrow")
    for k in range(n):
        files = sorted(spill.glob(f"{k}-*.arrow"))
        if files:
            yield pl.concat([pl.read_ipc(f) for f in files]).sort(_GROUP_HASH, ROW)
            for f in files:
                f.unlink()
    shutil.rmtree(spill, ignore_errors=True)


def _pair_table(table: Table, frame: pl.LazyFrame, key: str, spec: PairSpec, out: Path | _RankSpill,
                c: dict[str, int], work: Path, say: Progress,
                extra: Callable[[pl.DataFrame], None] | None = None,
                restart: Callable[[], None] | None = None) -> list[pl.DataFrame]:
    """Stream a relationship table to ``out`` (a CSV, or a rank spill): rejects aside, drops counted,
    repeated pairs collapsed.

    Returns the rejected rows (``__row``, ``__reason``, ``key``).
    """
    bad_parts: list[pl.DataFrame] = []

    def write_all(batches: Iterable[pl.DataFrame]) -> bool:
        # Polars writes without the GIL: one writer thread formats batch i while batch i+1 is cleaned.
        with ExitStack() as stack:
            emit: Callable[[pl.DataFrame], None]
            if isinstance(out, _RankSpill):
                out.reset()
                emit = out.add
            else:
                fh = stack.enter_context(out.open("wb"))

                def emit(df: pl.DataFrame) -> None:
                    df.write_csv(fh, include_header=False)

            # Entered after the file, so left first: the writer finishes before the file closes.
            writer = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="etl-write"))
            pending: list[Future[None]] = []

            def write(df: pl.DataFrame) -> None:
                c["written"] += df.height
                if extra:
                    extra(df)  # it sees every written batch
                if pending:
                    pending.pop().result()
                pending.append(writer.submit(emit, df.select(spec.out_cols)))

            c["repeated_pair"], grouped = _write_grouped(batches, spec.pair, write)
            for f in pending:
                f.result()
        return grouped

    grouped = write_all(_kept_batches(table, frame, spec, c, bad_parts, key, say))
    table.rows = c["rows_read"]
    if not grouped:
        # Repeated pairs may sit far apart: write again from partitions that each hold all rows of a start id.
        say(f"{table.source.path.name} is not grouped by {key}: collapsing repeated pairs through partitions")
        c["written"] = 0
        if restart:
            restart()
        write_all(_regrouped(table, frame, spec, key, work))
    return bad_parts


def _citations(table: Table, index: IdIndex, tmp: Path, counts: dict[str, dict[str, int]],
               rejects: list[pl.DataFrame], say: Progress) -> None:
    spec = PairSpec(("s", "e"), {1: "self_citation", 2: "dangling_citing", 3: "dangling_cited"},
                    ["s", "e", "seq", "category", "date"])

    def run(t: Table) -> tuple[dict[str, int], list[pl.DataFrame]]:
        c = {"rows_read": 0, "rejected": 0, "self_citation": 0, "dangling_citing": 0, "dangling_cited": 0,
             "repeated_pair": 0, "bad_date": 0, "written": 0}
        # Each derived value is a column before it is used twice: Polars evaluates a repeated
        # expression again (the stripped date was stripped twice, the id keys parsed six times).
        d = pl.col("citation_date")
        frame = t.scan().with_columns(d.str.strip_chars())
        frame = index.with_member(index.with_member(frame, "patent_id", "__in_s"), "citation_patent_id", "__in_e")
        frame = _with_hashes(frame.select(
            REASON, "patent_id", ROW, pl.col("patent_id").alias("s"), pl.col("citation_patent_id").alias("e"),
            pl.col("citation_sequence").str.to_integer(strict=False).alias("seq"),
            pl.col("citation_category").alias("category"),
            pl.when(d.str.contains(_DATE_RE)).then(d).alias("date"),
            _status(pl.when(pl.col("patent_id") == pl.col("citation_patent_id")).then(1)
                    .when(~pl.col("__in_s")).then(2).when(~pl.col("__in_e")).then(3).otherwise(KEEP)),
        ), spec.pair)

        def dates(df: pl.DataFrame) -> None:
            c["bad_date"] += df["date"].null_count()

        bad = _pair_table(t, frame, "patent_id", spec, tmp / "cites.csv", c, tmp / "work", say, dates,
                          lambda: c.update(bad_date=0))
        return c, bad

    c, bad = table.run(run)
    c["rejected"] = sum(b.height for b in bad)
    if bad:
        rejects.append(_reject_frame(table, pl.concat(bad), "patent_id"))
    counts["citations"] = c


#: What a CPC symbol (subgroup) looks like; the hierarchy levels are cut out of it by position.
_SYMBOL_RE = r"^[A-HY]\d\d[A-Z]\d+/\d+$"
#: A CPC symbol as the graph keys it (PatentsView pads some main groups with spaces: ``A01B   1/00``).
_SYMBOL = pl.col("cpc_group").str.replace_all(" ", "", literal=True)


def _symbol_enum(table: Table) -> pl.Enum:
    """Every CPC symbol of the table, sorted, as an Enum: a symbol's rank is its position.

    A pass of its own (the symbol column alone, ~0.15 s per 2M rows), so that classified_as
    rows can be spilled by rank as they stream instead of written and read back.
    """
    syms = table.run(lambda t: t.scan().select(_SYMBOL.alias("sym")).drop_nulls().unique()
                     .collect(engine="streaming"))["sym"]
    return pl.Enum(syms.sort())


def _first_of_runs(key: pl.Series, seq: pl.Series) -> np.ndarray:
    """Positions of the row with the lowest ``seq`` (nulls last, the first on ties) in each run of
    equal adjacent ``key`` values.

    Linear numpy on rows grouped by key; a sort and a unique per 250,000-row batch cost 0.8 s of the
    3M CPC phase.
    """
    n = key.len()
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(key.ne_missing(key.shift(1)).fill_null(True).to_numpy())
    s = seq.cast(pl.Int64).fill_null(np.iinfo(np.int64).max).to_numpy()
    lengths = np.diff(np.append(starts, n))
    lowest = np.flatnonzero(s == np.repeat(np.minimum.reduceat(s, starts), lengths))
    run = np.repeat(np.arange(starts.size), lengths)[lowest]
    first = np.ones(lowest.size, dtype=bool)
    first[1:] = run[1:] != run[:-1]
    return lowest[first]


def _cpc(table: Table, index: IdIndex, out: _RankSpill, symbols: pl.Enum, counts: dict[str, dict[str, int]],
         rejects: list[pl.DataFrame], say: Progress) -> tuple[pl.DataFrame, _Order]:
    """Stream g_cpc_current into ``out``; returns (the symbols in use, each patent's first symbol as an order)."""
    # Per patent its first symbol's rank, and the ranks in use as a mask: integers, not the
    # strings of every batch (~20 bytes less per patent, nothing per batch).
    used = np.zeros(len(symbols.categories), dtype=bool)
    firsts: list[pl.DataFrame] = []

    def seen(df: pl.DataFrame) -> None:
        # A start id's rows are all in one batch here (see _write_grouped), so per batch is exact.
        rank = df["__rank"]
        used[rank.to_numpy()] = True
        at = _first_of_runs(df["p"], df["seq"])
        firsts.append(pl.DataFrame({"id": df["p"].gather(at), "__r": rank.gather(at)}))
        return None

    def restart() -> None:
        used[:] = False
        firsts.clear()

    # The symbol travels as its rank (4 bytes instead of a 16-byte string view: the spill of
    # classified_as rows is a quarter smaller) and is looked up again when the CSV is written.
    spec = PairSpec(("p", "__rank"), {1: "unknown_patent", 2: "malformed_symbol"}, ["p", "seq", "type", "__rank"])
    # Rows whose symbol is not a CPC symbol are dropped (and counted) here, not only left out of the
    # hierarchy: their CLASSIFIED_AS would point at no node, and the import's count check would fail.
    names = pl.Series(symbols.categories)
    malformed = names.filter(~names.str.contains(_SYMBOL_RE))
    status: Any = pl.when(~pl.col("__in_p")).then(1)
    if malformed.len():  # a string test per row, so only when some symbol is malformed
        status = status.when(_SYMBOL.is_in(malformed.implode())).then(2)

    def run(t: Table) -> tuple[dict[str, int], list[pl.DataFrame]]:
        restart()
        c = {"rows_read": 0, "rejected": 0, "unknown_patent": 0, "malformed_symbol": 0, "repeated_pair": 0,
             "written": 0}
        # The symbol's rank is cast in the streaming query, on all cores: on the main thread, per
        # batch, the cast rebuilt the Enum's lookup every time (~50 ms per 250,000 rows).
        frame = _with_hashes(index.with_member(t.scan(), "patent_id", "__in_p").select(
            REASON, "patent_id", ROW, pl.col("patent_id").alias("p"),
            _SYMBOL.cast(symbols).to_physical().cast(pl.UInt32).alias("__rank"),
            pl.col("cpc_sequence").str.to_integer(strict=False).alias("seq"),
            pl.col("cpc_type").alias("type"),
            _status(status.otherwise(KEEP)),
        ), spec.pair)
        bad = _pair_table(t, frame, "patent_id", spec, out, c, out.dir.parent, say, seen, restart)
        return c, bad

    c, bad = table.run(run)
    c["rejected"] = sum(b.height for b in bad)
    if bad:
        rejects.append(_reject_frame(table, pl.concat(bad), "patent_id"))
    counts["cpc"] = c
    in_use = pl.DataFrame({"sym": pl.Series(symbols.categories).filter(pl.Series(used))})
    first = pl.concat(firsts) if firsts else pl.DataFrame(schema={"id": pl.String, "__r": pl.UInt32})
    return in_use, _Order(len(symbols.categories), first)


class _RankSpill:
    """Rows with an integer ``__rank`` in [0, ranks], spilled to disk in ``parts`` rank ranges and
    read back a range at a time, each once (:meth:`take`; rows of one rank keep the order they came in).
    Memory is one range.

    Each range is one file that every batch appends an Arrow IPC stream to. (A file per range and
    batch made 5,400 files per table at 9M patents; creating and scanning them was ~8 s of the
    33 s text phase.)
    """

    def __init__(self, work: Path, name: str, ranks: int, parts: int) -> None:
        self.parts = parts
        self.ranks = ranks
        self.dir = work / f"{name}.buckets"
        self.files: dict[int, BinaryIO] = {}
        #: Where each appended stream ends, per range (the first entry is 0).
        self.ends: dict[int, list[int]] = {}
        self.reset()

    @staticmethod
    def parts_for(expected_bytes: int) -> int:
        return max(1, math.ceil(expected_bytes / _CLUSTER_BYTES))

    def _close(self) -> None:
        for fh in self.files.values():
            fh.close()
        self.files.clear()

    def reset(self) -> None:
        self._close()
        self.ends.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)

    def remove(self) -> None:
        self._close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def add(self, df: pl.DataFrame) -> None:
        """Append the rows of ``df`` to their ranges; rows with a negative ``__rank`` are left out
        (cheaper than filtering them first: the partition copies the rows anyway)."""
        bucket = (pl.col("__rank").cast(pl.Int64) * self.parts // (self.ranks + 1)).alias("__bucket")
        for (k,), part in df.with_columns(bucket).partition_by("__bucket", as_dict=True, include_key=False).items():
            if k < 0:
                continue
            fh = self.files.get(k)
            if fh is None:
                fh = self.files[k] = (self.dir / f"{k}.arrows").open("ab")
                self.ends.setdefault(k, [0])
            part.write_ipc_stream(fh)
            self.ends[k].append(fh.tell())

    def take(self, k: int) -> pl.DataFrame | None:
        """The rows of range ``k`` in the order they were added (None when it has none), once: the
        range's file is removed as soon as it is mapped, and its pages freed when the frame is dropped.

        Freeing them at once lets the output written next reuse its page-cache pages. Writing into
        pages the kernel has not used lately was ~8x slower on our VMs (dd of 1 GB: 0.35 GB/s into
        fresh pages, 4 GB/s into just-freed ones); at 3M patents 1.6 GB of spills are read while 1.4
        GB of output is written.
        """
        self._close()
        ends = self.ends.pop(k, None)
        if not ends:
            return None
        path = self.dir / f"{k}.arrows"
        # Mapped, not read: Arrow reads the streams in place (their strings stay in the page cache
        # until the frame is dropped), where reading the bytes and parsing them copied every byte
        # twice (0.9 ns per byte of CPU). Unlinked at once: the pages go when the mapping does.
        data = pa.memory_map(str(path)).read_buffer()
        path.unlink()
        streams = [pa_ipc.open_stream(data.slice(a, b - a)).read_all() for a, b in itertools.pairwise(ends)]
        # A Table always comes back as a DataFrame (from_arrow is typed for Arrays too).
        return cast(pl.DataFrame, pl.from_arrow(pa.concat_tables(streams), rechunk=False))

    def write_csv(self, out: Path, transform: Callable[[int, pl.DataFrame], pl.DataFrame] | None = None) -> None:
        """Write every range sorted by rank (stably), through ``transform(k, rows)`` when given.

        A writer thread formats range k while range k+1 is read and sorted (Polars writes
        without the GIL).
        """
        with out.open("wb") as fh, ThreadPoolExecutor(max_workers=1, thread_name_prefix="etl-write") as writer:
            pending: Future[None] | None = None
            for k in range(self.parts):
                part = self.take(k)
                if part is None:
                    continue
                part = part.sort("__rank", maintain_order=True)
                part = transform(k, part) if transform else part.drop("__rank")
                if pending:
                    pending.result()
                pending = writer.submit(part.write_csv, fh, include_header=False, quote_style="necessary")
            if pending:
                pending.result()
        self.remove()


@dataclass(frozen=True)
class _Order:
    """The file order that lays the graph out for mining (what the graph holds does not change).

    neo4j-admin import stores nodes and relationships in file order, and mining walks every patent
    of a subgroup (then of its main group and subclass), reading the relationship, the node and its
    first property record of each. classified_as.csv in CPC symbol order and patents.csv in the
    order of each patent's first symbol (patents without one last) put those records side by side
    instead of spreading them over the stores: citation-cpc mines ~1.8x faster on the 1M graph
    (benchmarks/RESULTS.md). Symbols are ranked by sort order, so the sorts are on integers.
    """

    ranks: int
    first: pl.DataFrame

    def patent_rank(self, df: pl.DataFrame) -> pl.Series:
        joined = df.select("id").join(self.first, on="id", how="left", maintain_order="left")
        return joined["__r"].cast(pl.Int64).fill_null(self.ranks).alias("__rank")


def _cpc_titles(tables: dict[str, Table], counts: dict[str, dict[str, int]],
                rejects: list[pl.DataFrame]) -> dict[str, str]:
    titles: dict[str, str] = {}
    for name, key in (("cpc_group", "id"), ("g_cpc_title", "cpc_group")):
        if name not in tables:
            continue
        t = tables[name]
        df = t.run(lambda t: t.scan().collect())
        t.rows = df.height
        bad = df.filter(pl.col(REASON).is_not_null())
        good = df.filter(pl.col(REASON).is_null())
        if bad.height:
            rejects.append(_reject_frame(t, bad, key))
        if name == "cpc_group":
            for sym, title in good.select("id", "title").iter_rows():
                titles[sym.strip()] = title or ""
            counts["cpc_group_titles"] = {"rows_read": df.height, "rejected": bad.height}
            continue
        for code_col, title_col in (("cpc_class", "cpc_class_title"), ("cpc_subclass", "cpc_subclass_title"),
                                    ("cpc_group", "cpc_group_title")):
            for sym, title in good.select(code_col, title_col).unique(code_col).iter_rows():
                if sym and title:
                    titles[sym.strip()] = title
        counts["cpc_titles"] = {"rows_read": df.height, "rejected": bad.height}
    return titles


def _hierarchy(symbols: pl.DataFrame, titles: dict[str, str], tmp: Path) -> dict[str, int]:
    """CPC nodes from the symbols in use (well-formed: see :func:`_cpc`), each level PART_OF its parent."""
    s = symbols.with_columns(
        grp=pl.col("sym").str.split("/").list.first() + "/00",
        sub=pl.col("sym").str.slice(0, 4), cls=pl.col("sym").str.slice(0, 3), sec=pl.col("sym").str.slice(0, 1))
    title = lambda col: pl.col(col).replace_strict(titles, default=None, return_dtype=pl.String)  # noqa: E731
    levels = {
        "CPCSection": s.select(pl.col("sec").alias("code")).unique(),
        "CPCClass": s.select(pl.col("cls").alias("code"), title("cls").alias("title")).unique("code"),
        "CPCSubclass": s.select(pl.col("sub").alias("code"), title("sub").alias("title")).unique("code"),
        "CPCGroup": s.select(pl.col("grp").alias("code"), title("grp").alias("title")).unique("code"),
        "CPCSubgroup": s.select(pl.col("sym").alias("code"), title("sym").alias("title")).unique("code"),
    }
    out: dict[str, int] = {}
    for label, df in levels.items():
        df.sort("code").write_csv(tmp / NODE_FILES[label][0], include_header=False)
        out[label] = df.height
    for f, child, parent in (("part_of_class.csv", "cls", "sec"), ("part_of_subclass.csv", "sub", "cls"),
                             ("part_of_group.csv", "grp", "sub"), ("part_of_subgroup.csv", "sym", "grp")):
        s.select(child, parent).unique(child).sort(child).write_csv(tmp / f, include_header=False)
    return out
