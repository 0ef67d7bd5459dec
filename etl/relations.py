"""The relationship tables streamed in batches: citations (CITES) and CPC assignments (CLASSIFIED_AS).

A generic engine (:func:`pair_table`) streams a table in source order: rejected rows aside, dropped
rows counted by reason, repeated (start, end) pairs collapsed within the rows of one start id (which
PatentsView keeps together; a table that is not grouped that way is detected and redone through hash
partitions on disk). :func:`citations` and :func:`cpc` say what cleaning means for each table.

Example::

    citations(tables["g_us_patent_citation"], index, tmp, run)   # writes tmp/cites.csv
"""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from patentminer.etl.contract import (
    BATCH,
    BUCKET_BYTES,
    DATE_RE,
    GROUP_HASH,
    KEEP,
    KEEP_COLUMN,
    PAIR_HASH,
    PROGRESS_ROWS,
    REJECTED,
    STATUS,
    EtlRun,
    Progress,
)
from patentminer.etl.ids import IdIndex
from patentminer.etl.sources import REASON, ROW, Table
from patentminer.etl.spill import Order, RankSpill


@dataclass(frozen=True)
class PairSpec:
    """How one relationship table streams: its pair columns, drop reasons by status code, output columns."""

    pair: tuple[str, str]
    drops: dict[int, str]
    out_cols: list[str]


def _status(reason_chain: Any) -> pl.Expr:
    return (pl.when(pl.col(REASON).is_not_null()).then(REJECTED).otherwise(reason_chain)).cast(pl.Int8).alias(STATUS)


def _with_hashes(frame: pl.LazyFrame, pair: tuple[str, str]) -> pl.LazyFrame:
    """Hashes computed while parsing (on all cores): the start id (runs) and the pair (repeats)."""
    a, b = pair
    return (frame.with_columns(pl.col(a).hash(seed=1).alias(GROUP_HASH))
            .with_columns((pl.col(GROUP_HASH) ^ pl.col(b).hash(seed=2)).alias(PAIR_HASH)))


def _collapse(df: pl.DataFrame, pair: tuple[str, str]) -> tuple[np.ndarray | None, int]:
    """The rows of ``df`` to write: those with ``__keep``, repeated ``pair`` rows collapsed into the
    one with the lowest sequence (then the first source row). None when that is every row.

    The pair hash finds candidates; the exact comparison runs on those alone. Returns (mask,
    rows collapsed).
    """
    keep = df[KEEP_COLUMN].to_numpy().copy()
    every = bool(keep.all())
    # Sorting the hashes and comparing neighbours is cheaper than a hash table over the batch (only
    # the repeated values are needed, not where they sit); the candidates are then picked by a hash
    # lookup. The low 32 bits are enough to find candidates (a few more per batch, settled exactly
    # below) and sort faster than 64 (benchmarks/RESULTS.md, "ETL: repeated pairs").
    low = (df[PAIR_HASH].to_numpy() & 0xFFFFFFFF).astype(np.uint32)
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
        gh = df[GROUP_HASH]
        # Copied out: the filtered Series kept the whole batch's buffers alive, so memory grew with
        # the table.
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
        gh = df[GROUP_HASH]
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

    Dropped rows stay until the rows are written, so a batch is filtered once (see ``KEEP_COLUMN``);
    they share their start id with the run they sit in, which is what the grouping looks at.
    """
    for b in frame.collect_batches(chunk_size=BATCH):
        c["rows_read"] += b.height
        if c["rows_read"] // PROGRESS_ROWS != (c["rows_read"] - b.height) // PROGRESS_ROWS:
            say(f"{table.source.path.name}: {c['rows_read']:,} rows")
        st = b[STATUS].to_numpy()
        # A count per status code (REJECTED is -1): a bincount, cheaper than a value_counts.
        for code, n in enumerate(np.bincount(st.astype(np.intp) - REJECTED).tolist(), start=REJECTED):
            if n and code not in (KEEP, REJECTED):
                c[spec.drops[code]] += n
        rows = b.drop(REASON, key, STATUS)
        rejected = st == REJECTED
        if rejected.any():
            bad_parts.append(b.filter(pl.Series(rejected)).select(ROW, REASON, key))
            rows, st = rows.filter(pl.Series(~rejected)), st[~rejected]
        yield rows.with_columns(pl.Series(KEEP_COLUMN, st == KEEP))


def _regrouped(table: Table, frame: pl.LazyFrame, spec: PairSpec, key: str, work: Path) -> Iterator[pl.DataFrame]:
    """The kept rows again, for a table not grouped by its start id: hash-partitioned to disk, then
    one partition at a time, sorted by start id and source row. Memory is one partition."""
    n = max(1, math.ceil(table.path.stat().st_size / BUCKET_BYTES))
    spill = work / f"{table.source.spec.name}.buckets"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    scratch: dict[str, int] = defaultdict(int)
    for i, rows in enumerate(_kept_batches(table, frame, spec, scratch, [], key, lambda _m: None)):
        kept = rows.filter(pl.col(KEEP_COLUMN))
        parts = kept.with_columns((pl.col(GROUP_HASH) % n).alias("__bucket")).partition_by("__bucket", as_dict=True)
        for (k,), part in parts.items():
            part.drop("__bucket").write_ipc(spill / f"{k}-{i:08d}.arrow")
    for k in range(n):
        files = sorted(spill.glob(f"{k}-*.arrow"))
        if files:
            yield pl.concat([pl.read_ipc(f) for f in files]).sort(GROUP_HASH, ROW)
            for f in files:
                f.unlink()
    shutil.rmtree(spill, ignore_errors=True)


def pair_table(table: Table, frame: pl.LazyFrame, key: str, spec: PairSpec, out: Path | RankSpill,
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
            if isinstance(out, RankSpill):
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


def citations(table: Table, index: IdIndex, tmp: Path, run: EtlRun) -> None:
    """g_us_patent_citation -> cites.csv: both ends in the graph, no self-citations, repeated pairs collapsed
    to the lowest citation_sequence, bad or partial dates dropped from the row (the citation is kept)."""
    spec = PairSpec(("s", "e"), {1: "self_citation", 2: "dangling_citing", 3: "dangling_cited"},
                    ["s", "e", "seq", "category", "date"])

    def stream(t: Table) -> tuple[dict[str, int], list[pl.DataFrame]]:
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
            pl.when(d.str.contains(DATE_RE)).then(d).alias("date"),
            _status(pl.when(pl.col("patent_id") == pl.col("citation_patent_id")).then(1)
                    .when(~pl.col("__in_s")).then(2).when(~pl.col("__in_e")).then(3).otherwise(KEEP)),
        ), spec.pair)

        def dates(df: pl.DataFrame) -> None:
            c["bad_date"] += df["date"].null_count()

        bad = pair_table(t, frame, "patent_id", spec, tmp / "cites.csv", c, tmp / "work", run.say, dates,
                         lambda: c.update(bad_date=0))
        return c, bad

    c, bad = table.run(stream)
    c["rejected"] = sum(b.height for b in bad)
    if bad:
        run.reject(table, pl.concat(bad), "patent_id")
    run.counts["citations"] = c


#: What a CPC symbol (subgroup) looks like; the hierarchy levels are cut out of it by position.
SYMBOL_RE = r"^[A-HY]\d\d[A-Z]\d+/\d+$"
#: A CPC symbol as the graph keys it (PatentsView pads some main groups with spaces: ``A01B   1/00``).
SYMBOL = pl.col("cpc_group").str.replace_all(" ", "", literal=True)


def symbol_enum(table: Table) -> pl.Enum:
    """Every CPC symbol of the table, sorted, as an Enum: a symbol's rank is its position.

    A pass of its own (the symbol column alone, cheap), so that classified_as rows can be spilled by
    rank as they stream instead of written and read back.
    """
    syms = table.run(lambda t: t.scan().select(SYMBOL.alias("sym")).drop_nulls().unique()
                     .collect(engine="streaming"))["sym"]
    return pl.Enum(syms.sort())


def first_of_runs(key: pl.Series, seq: pl.Series) -> np.ndarray:
    """Positions of the row with the lowest ``seq`` (nulls last, the first on ties) in each run of
    equal adjacent ``key`` values.

    Linear numpy on rows grouped by key, where a sort and a unique per batch cost more
    (benchmarks/RESULTS.md, "ETL: CPC").
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


def cpc(table: Table, index: IdIndex, out: RankSpill, symbols: pl.Enum, run: EtlRun) -> tuple[pl.DataFrame, Order]:
    """Stream g_cpc_current into ``out``; returns (the symbols in use, each patent's first symbol as an order)."""
    # Per patent its first symbol's rank, and the ranks in use as a mask: integers, not the
    # strings of every batch (~20 bytes less per patent, nothing per batch).
    used = np.zeros(len(symbols.categories), dtype=bool)
    firsts: list[pl.DataFrame] = []

    def seen(df: pl.DataFrame) -> None:
        # A start id's rows are all in one batch here (see _write_grouped), so per batch is exact.
        rank = df["__rank"]
        used[rank.to_numpy()] = True
        at = first_of_runs(df["p"], df["seq"])
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
    malformed = names.filter(~names.str.contains(SYMBOL_RE))
    status: Any = pl.when(~pl.col("__in_p")).then(1)
    if malformed.len():  # a string test per row, so only when some symbol is malformed
        status = status.when(SYMBOL.is_in(malformed.implode())).then(2)

    def stream(t: Table) -> tuple[dict[str, int], list[pl.DataFrame]]:
        restart()
        c = {"rows_read": 0, "rejected": 0, "unknown_patent": 0, "malformed_symbol": 0, "repeated_pair": 0,
             "written": 0}
        # The symbol's rank is cast in the streaming query, on all cores: on the main thread, per
        # batch, the cast rebuilt the Enum's lookup every time.
        frame = _with_hashes(index.with_member(t.scan(), "patent_id", "__in_p").select(
            REASON, "patent_id", ROW, pl.col("patent_id").alias("p"),
            SYMBOL.cast(symbols).to_physical().cast(pl.UInt32).alias("__rank"),
            pl.col("cpc_sequence").str.to_integer(strict=False).alias("seq"),
            pl.col("cpc_type").alias("type"),
            _status(status.otherwise(KEEP)),
        ), spec.pair)
        bad = pair_table(t, frame, "patent_id", spec, out, c, out.dir.parent, run.say, seen, restart)
        return c, bad

    c, bad = table.run(stream)
    c["rejected"] = sum(b.height for b in bad)
    if bad:
        run.reject(table, pl.concat(bad), "patent_id")
    run.counts["cpc"] = c
    in_use = pl.DataFrame({"sym": pl.Series(symbols.categories).filter(pl.Series(used))})
    first = pl.concat(firsts) if firsts else pl.DataFrame(schema={"id": pl.String, "__r": pl.UInt32})
    return in_use, Order(len(symbols.categories), first)
