"""PatentsView tables -> the CSV files ``neo4j-admin database import full`` loads: the run itself.

One run: find the sources, read the patent table's ids and flags (first row wins, rejects), stream
the citation and CPC tables (:mod:`~patentminer.etl.relations`), write patents.csv with the abstracts in
the CPC order the CPC phase found (:mod:`~patentminer.etl.spill`), the hierarchy
(:mod:`~patentminer.etl.hierarchy`), rejects.tsv and manifest.json. Outputs are built in
``OUT_DIR/.etl-tmp`` and moved into place when complete, ``manifest.json`` last. What the files are is
in :mod:`~patentminer.etl.contract`.

Example::

    manifest = run_etl(Path("data/patentsview"), Path("data/import"), EtlOptions())
    print(manifest["graph"]["nodes"]["Patent"])
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from patentminer import __version__
from patentminer.errors import ConfigError, InputError, OutputExistsError
from patentminer.etl.contract import (
    DATE_RE,
    IMPORT_FORMAT,
    NODE_FILES,
    OWNED,
    REL_FILES,
    SCHEMA_NAME,
    TEXT_BATCH,
    EtlRun,
    Progress,
    csv_chunks,
    header_name,
)
from patentminer.etl.hierarchy import cpc_titles, hierarchy
from patentminer.etl.ids import IdIndex, buckets, rank_keys
from patentminer.etl.relations import citations, cpc, symbol_enum
from patentminer.etl.sources import REASON, ROW, Table, file_digest, find_sources
from patentminer.etl.spill import Order, RankSpill


@dataclass(frozen=True)
class EtlOptions:
    keep_withdrawn: bool = False
    max_reject_rate: float = 0.001
    overwrite: bool = False

    def validate(self) -> None:
        if not 0 <= self.max_reject_rate <= 1:
            raise ConfigError(f"--max-reject-rate {self.max_reject_rate} is not a fraction; use a value in [0, 1].")


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


def run_etl(source_dir: Path, out_dir: Path, options: EtlOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Convert the PatentsView tables in ``source_dir`` into import CSVs in ``out_dir``.

    Returns the manifest (also written to ``out_dir/manifest.json``). Raises InputError
    for unusable input and when rejects exceed ``options.max_reject_rate`` (after
    writing ``rejects.tsv``), OutputExistsError when ``out_dir`` holds another run.
    """
    with csv_chunks():
        return _run_etl(source_dir, out_dir, options, progress)


def _run_etl(source_dir: Path, out_dir: Path, options: EtlOptions, progress: Progress | None) -> dict[str, Any]:
    options.validate()
    say = progress or (lambda _m: None)
    started = time.monotonic()
    sources = find_sources(source_dir)
    tmp = prepare_out_dir(out_dir, options.overwrite)
    work = tmp / "work"
    # The sources' BLAKE3 digests run beside the parsing instead of before it.
    digests = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etl-digest")
    hashes = {name: digests.submit(file_digest, src.path) for name, src in sources.items()}
    timings: dict[str, float] = {}
    run = EtlRun(say=say)
    counts = run.counts

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
        kept = timed("patents", lambda: _patents(tables, options, run))
        index = IdIndex.build(kept.rows["id"])
        titles = cpc_titles(tables, run)
        timed("citations", lambda: citations(tables["g_us_patent_citation"], index, tmp, run))
        cpc_table = tables["g_cpc_current"]
        enum = timed("cpc symbols", lambda: symbol_enum(cpc_table))
        ranked = RankSpill(work, "classified_as", len(enum.categories),
                           RankSpill.parts_for(cpc_table.path.stat().st_size))
        symbols, order = timed("cpc", lambda: cpc(cpc_table, index, ranked, enum, run))
        names = pl.Series(enum.categories)
        timed("cpc order", lambda: ranked.write_csv(tmp / "classified_as.csv", _classified_as(names)))
        timed("patent text", lambda: _write_patents(tables, kept, tmp, work, order, run))
        graph_nodes = timed("cpc hierarchy", lambda: hierarchy(symbols, titles, tmp, names))
        for t in tables.values():
            t.discard()
        source_info = {name: {"file": src.path.name, "bytes": src.path.stat().st_size,
                              "hash": hashes[name].result()[0]} for name, src in sources.items()}
    finally:
        digests.shutdown(cancel_futures=True)

    all_rejects = pl.concat(run.rejects) if run.rejects else pl.DataFrame(
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


def _classified_as(names: pl.Series) -> Callable[[int, pl.DataFrame], pl.DataFrame]:
    """classified_as.csv rows from spilled ones: the symbol looked up by its rank, which is also the subgroup's
    number (sg), and the patent's rk and bucket."""

    def rows(_k: int, df: pl.DataFrame) -> pl.DataFrame:
        rk = rank_keys(df["p"])
        return df.select("p", names.gather(df["__rank"]).alias("sym"), rk.alias("rk"),
                         df["__rank"].cast(pl.Int32).alias("sg"), buckets(rk), "seq", "type")

    return rows


def _schema_version() -> int:
    from patentminer.cypher.registry import Registry

    return Registry.load().latest(SCHEMA_NAME).version


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
    # First row per id, found on 64-bit hashes of the ids: a hash table of the id strings (a group_by)
    # peaks at several times the memory. Rows whose hash was seen before are then checked against the strings.
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


def _patents(tables: dict[str, Table], options: EtlOptions, run: EtlRun) -> _KeptPatents:
    """First row per id, withdrawn left out; :func:`_write_patents` writes them with their abstracts."""
    t = tables["g_patent"]
    legacy = "patent_abstract" in t.source.header
    date = pl.col("patent_date").str.strip_chars()
    date_ok = date.str.contains(DATE_RE).fill_null(False)
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
    run.reject(t, bad, "patent_id")
    n_withdrawn = int(winners["wd"].sum())
    kept = winners if options.keep_withdrawn else winners.filter(~pl.col("wd"))
    run.counts["patents"] = {
        "rows_read": t.rows, "rejected": bad.height, "duplicate_id": t.rows - bad.height - winners.height,
        "withdrawn": n_withdrawn, "withdrawn_dropped": 0 if options.keep_withdrawn else n_withdrawn,
        "bad_date": kept.height - int(kept["date_ok"].sum()), "written": kept.height,
    }
    return _KeptPatents(kept.select(ROW, "id"), legacy, columns)


def _write_patents(tables: dict[str, Table], kept: _KeptPatents, tmp: Path, work: Path, order: Order,
                   run: EtlRun) -> None:
    """patents.csv in the order of each patent's first CPC symbol (see :class:`_Order`), rows of
    one symbol in g_patent order.

    Each kept patent's line in patents.csv is known before any text is read. The kept g_patent
    rows are read again and spilled by that line, and so are the abstracts (a separate table in
    current releases); each range of lines is then put in order and written. Memory is one range
    plus the ids.
    """
    t = tables["g_patent"]
    expected = t.path.stat().st_size + (tables["g_patent_abstract"].path.stat().st_size if not kept.legacy else 0)
    parts = RankSpill.parts_for(expected)
    rank = order.patent_rank(kept.rows)
    n = rank.len()
    # By rank, ties in source order ("ordinal": faster than numpy's stable argsort).
    line = (rank.rank("ordinal") - 1).cast(pl.Int32).to_numpy()  # below 2^31: one line per patent
    # The line and rank key of each source row (-1: not kept), so a batch is placed by a gather; the
    # spill leaves out the rows that are not kept.
    line_of_row = np.full(t.rows, -1, dtype=np.int32)
    line_of_row[kept.rows[ROW].to_numpy()] = line
    rk_of_row = np.zeros(t.rows, dtype=np.int32)
    rk_of_row[kept.rows[ROW].to_numpy()] = rank_keys(kept.rows["id"]).to_numpy()
    rows = RankSpill(work, "patents", max(n - 1, 0), parts)
    text = [pl.col("patent_abstract").alias("abstract")] if kept.legacy else []
    frame = t.scan().select(ROW, pl.col("patent_id").alias("id"), *kept.columns, *text)
    for b in frame.collect_batches(chunk_size=TEXT_BATCH):
        source_rows = b[ROW].to_numpy()
        rows.add(b.with_columns(pl.Series("rk", rk_of_row[source_rows]),
                                pl.Series("__rank", line_of_row[source_rows])).drop(ROW))
    del line_of_row, rk_of_row
    if kept.legacy:
        rows.write_csv(tmp / "patents.csv", lambda _k, df: df.select(_PATENT_COLUMNS))
        return
    abstracts = RankSpill(work, "abstracts", max(n - 1, 0), parts)
    _spill_abstracts(tables["g_patent_abstract"], kept.rows["id"], line, abstracts, run)

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


def _spill_abstracts(a: Table, ids: pl.Series, line: np.ndarray, spill: RankSpill, run: EtlRun) -> None:
    """Spill (``abstract``, ``__rank``: the patents.csv line) of the kept patents (``ids``, their
    lines ``line``), streaming g_patent_abstract; the first abstract row of an id wins. Memory is the
    ids plus a batch.
    """
    # Ids are looked up by binary search in the sorted kept ids: a join per batch hashed every kept id
    # each time (benchmarks/RESULTS.md, "ETL: the text phase").
    by_id, sorted_ids = _sorted_ids(ids)

    def stream(a: Table) -> tuple[int, int, list[pl.DataFrame]]:
        matched = np.zeros(ids.len(), dtype=bool)
        bad_parts: list[pl.DataFrame] = []
        # Ids of abstracts without a kept patent (withdrawn, unknown): few, kept for the duplicate count.
        unmatched: list[pl.Series] = []
        n = repeats = 0
        frame = a.scan().select(ROW, REASON, "patent_id", pl.col("patent_abstract").alias("abstract"))
        spill.reset()
        for b in frame.collect_batches(chunk_size=TEXT_BATCH):
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

    n, duplicates, bad_parts = a.run(stream)
    a.rows = n
    n_bad = sum(b.height for b in bad_parts)
    if bad_parts:
        run.reject(a, pl.concat(bad_parts), "patent_id")
    run.counts["abstracts"] = {"rows_read": n, "rejected": n_bad, "duplicate_id": duplicates}
