"""PatentsView tables -> the CSV files ``neo4j-admin database import full`` loads.

Streaming: each source table is parsed once into Parquet (the citation and CPC tables
hash-partitioned on the citing patent, so that collapsing repeated pairs needs one
bucket in memory at a time, never the whole table). Outputs are built in
``OUT_DIR/.etl-tmp`` and moved into place when complete, ``manifest.json`` last.

Example::

    manifest = run_etl(Path("data/patentsview"), Path("data/import"), EtlOptions())
    print(manifest["graph"]["nodes"]["Patent"])
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from patentminer import __version__
from patentminer.errors import ConfigError, InputError, OutputExistsError
from patentminer.etl.sources import REASON, ROW, Source, file_digest, find_sources, line_numbers, stage

#: Version of the import-CSV layout and graph model; bump when either changes.
IMPORT_FORMAT = 1
SCHEMA_NAME = "schema"
_DATE_RE = r"^(1[7-9]\d\d|20\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
_BUCKET_BYTES = 256 << 20

#: Output files the ETL owns in OUT_DIR (data file, header line).
NODE_FILES: dict[str, tuple[str, str]] = {
    "Patent": ("patents.csv", "id:ID(Patent),title,abstract,date:date,year:int,type,kind,num_claims:int,rk:long"),
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


def run_etl(source_dir: Path, out_dir: Path, options: EtlOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Convert the PatentsView tables in ``source_dir`` into import CSVs in ``out_dir``.

    Returns the manifest (also written to ``out_dir/manifest.json``). Raises InputError
    for unusable input and when rejects exceed ``options.max_reject_rate`` (after
    writing ``rejects.tsv``), OutputExistsError when ``out_dir`` holds another run.
    """
    options.validate()
    say = progress or (lambda _m: None)
    started = time.monotonic()
    sources = find_sources(source_dir)
    tmp = prepare_out_dir(out_dir, options.overwrite)
    work = tmp / "work"
    timings: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    rejects: list[pl.DataFrame] = []

    def timed(stage_name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        result = fn()
        timings[stage_name] = round(time.monotonic() - t0, 2)
        say(f"{stage_name}: {timings[stage_name]:.1f}s")
        return result

    staged: dict[str, Path] = {}
    for name, src in sources.items():
        buckets = 1
        if name in ("g_us_patent_citation", "g_cpc_current"):
            buckets = max(1, math.ceil(src.path.stat().st_size * (4 if src.path.suffix == ".zip" else 1)
                                       / _BUCKET_BYTES))
        staged[name] = timed(f"parse {src.label}", partial(stage, src, work, buckets, "patent_id"))

    patents = timed("patents", lambda: _patents(sources, staged, options, tmp, counts, rejects))
    titles = _cpc_titles(sources, staged, counts, rejects)
    timed("citations", lambda: _citations(sources["g_us_patent_citation"], staged["g_us_patent_citation"],
                                          patents, tmp, counts, rejects))
    symbols = timed("cpc", lambda: _cpc(sources["g_cpc_current"], staged["g_cpc_current"], patents, tmp,
                                        counts, rejects))
    graph_nodes = timed("cpc hierarchy", lambda: _hierarchy(symbols, titles, tmp, counts))

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
        "sources": {name: {"file": src.path.name, "bytes": src.path.stat().st_size, "hash": file_digest(src.path)}
                    for name, src in sources.items()},
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


def _scan(path: Path) -> pl.LazyFrame:
    return pl.scan_parquet(path / "**/*.parquet" if path.is_dir() else path)


def _split(src: Source, staged: pl.LazyFrame, rejects: list[pl.DataFrame], key: str) -> tuple[pl.LazyFrame, int]:
    """Record the rejected rows of one staged table (with line numbers); return the good rows."""
    bad = staged.filter(pl.col(REASON).is_not_null()).select(ROW, REASON, key).collect()
    if bad.height:
        lines = line_numbers(staged, bad[ROW])
        rejects.append(pl.DataFrame({"source": [src.path.name] * bad.height, "line": lines,
                                     "reason": bad[REASON], "key": bad[key].fill_null("")}))
    return staged.filter(pl.col(REASON).is_null()), bad.height


def _patents(sources: dict[str, Source], staged: dict[str, Path], options: EtlOptions, tmp: Path,
             counts: dict[str, dict[str, int]], rejects: list[pl.DataFrame]) -> pl.DataFrame:
    src = sources["g_patent"]
    lf = _scan(staged["g_patent"])
    rows_read = lf.select(pl.len()).collect().item()
    good, n_bad = _split(src, lf, rejects, "patent_id")
    winners = good.group_by("patent_id").agg(pl.col(ROW).min())
    good = good.join(winners, on=["patent_id", ROW], how="semi")
    n_unique = winners.select(pl.len()).collect().item()
    withdrawn = good.filter(pl.col("withdrawn").str.strip_chars() == "1")
    n_withdrawn = withdrawn.select(pl.len()).collect().item()
    if not options.keep_withdrawn:
        good = good.filter(pl.col("withdrawn").str.strip_chars() != "1")
    if "patent_abstract" in src.header:
        abstracts = good.select("patent_id", "patent_abstract")
    else:
        a_src = sources["g_patent_abstract"]
        a_lf = _scan(staged["g_patent_abstract"])
        a_read = a_lf.select(pl.len()).collect().item()
        a_good, a_bad = _split(a_src, a_lf, rejects, "patent_id")
        a_win = a_good.group_by("patent_id").agg(pl.col(ROW).min())
        abstracts = a_good.join(a_win, on=["patent_id", ROW], how="semi").select("patent_id", "patent_abstract")
        counts["abstracts"] = {"rows_read": a_read, "rejected": a_bad,
                               "duplicate_id": a_read - a_bad - a_win.select(pl.len()).collect().item()}
    date_ok = pl.col("patent_date").str.strip_chars().str.contains(_DATE_RE)
    out = (
        good.select(pl.exclude("patent_abstract"))
        .join(abstracts, on="patent_id", how="left")
        .sort(ROW)
        .select(
            pl.col("patent_id").str.strip_chars().alias("id"),
            pl.col("patent_title").alias("title"),
            pl.col("patent_abstract").alias("abstract"),
            pl.when(date_ok).then(pl.col("patent_date").str.strip_chars()).alias("date"),
            pl.when(date_ok).then(pl.col("patent_date").str.slice(0, 4)).alias("year"),
            pl.col("patent_type").alias("type"),
            pl.col("wipo_kind").alias("kind"),
            pl.col("num_claims").str.strip_chars().alias("num_claims"),
            rank_key(pl.col("patent_id").str.strip_chars()).alias("rk"),
        )
    )
    out.sink_csv(tmp / "patents.csv", include_header=False, quote_style="necessary")
    # The ids and dates come from the patent rows alone; re-running `out` would redo the abstract join and sort.
    id_frame = good.select(pl.col("patent_id").str.strip_chars().alias("id"),
                           pl.when(date_ok).then(pl.col("patent_date")).alias("date")).collect()
    counts["patents"] = {
        "rows_read": rows_read, "rejected": n_bad, "duplicate_id": rows_read - n_bad - n_unique,
        "withdrawn": n_withdrawn, "withdrawn_dropped": 0 if options.keep_withdrawn else n_withdrawn,
        "bad_date": id_frame["date"].null_count(), "written": id_frame.height,
    }
    return id_frame.select("id")


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


def _good_rows(src: Source, bucket: Path, rejects: list[pl.DataFrame], c: dict[str, int],
               columns: list[pl.Expr]) -> pl.DataFrame:
    """One bucket's parseable rows as ``columns`` (plus the source row), counting reads and rejects."""
    lf = _scan(bucket)
    c["rows_read"] += lf.select(pl.len()).collect().item()
    good, n_bad = _split(src, lf, rejects, "patent_id")
    c["rejected"] += n_bad
    return good.select(*columns, pl.col(ROW)).collect()


def _first_by_sequence(df: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """One row per ``key``: the lowest sequence (then the first source row), in source order.

    Repeated pairs are rare, so only they are sorted; the rest pass through a hash test.
    """
    repeated = pl.struct(key).is_duplicated()
    single = df.filter(~repeated)
    dups = df.filter(repeated)
    if dups.is_empty():
        return df
    best = dups.sort("seq", ROW).unique(subset=key, keep="first", maintain_order=True)
    return pl.concat([single, best])


def _bucket_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else [path]


def _citations(src: Source, staged: Path, patents: pl.DataFrame, tmp: Path,
               counts: dict[str, dict[str, int]], rejects: list[pl.DataFrame]) -> None:
    c = {"rows_read": 0, "rejected": 0, "self_citation": 0, "dangling_citing": 0, "dangling_cited": 0,
         "repeated_pair": 0, "bad_date": 0, "written": 0}
    ids = patents
    parts: list[Path] = []
    for i, bucket in enumerate(_bucket_dirs(staged)):
        df = _good_rows(src, bucket, rejects, c, [
            pl.col("patent_id").str.strip_chars().alias("s"),
            pl.col("citation_patent_id").str.strip_chars().alias("e"),
            pl.col("citation_sequence").str.strip_chars().cast(pl.Int64).alias("seq"),
            pl.col("citation_category").alias("category"),
            pl.col("citation_date").str.strip_chars().alias("date"),
        ])
        n0 = df.height
        df = df.filter(pl.col("s") != pl.col("e"))
        c["self_citation"] += n0 - df.height
        n1 = df.height
        df = df.join(ids, left_on="s", right_on="id", how="semi")
        c["dangling_citing"] += n1 - df.height
        n2 = df.height
        df = df.join(ids, left_on="e", right_on="id", how="semi")
        c["dangling_cited"] += n2 - df.height
        n3 = df.height
        df = _first_by_sequence(df, ["s", "e"])
        c["repeated_pair"] += n3 - df.height
        ok = pl.col("date").str.contains(_DATE_RE).fill_null(False)
        c["bad_date"] += df.filter(~ok).height
        df = df.with_columns(pl.when(ok).then(pl.col("date")).alias("date"))
        part = tmp / "work" / f"cites-{i}.csv"
        df.select("s", "e", "seq", "category", "date").write_csv(part, include_header=False)
        c["written"] += df.height
        parts.append(part)
    _concat(parts, tmp / "cites.csv")
    counts["citations"] = c


def _cpc(src: Source, staged: Path, patents: pl.DataFrame, tmp: Path,
         counts: dict[str, dict[str, int]], rejects: list[pl.DataFrame]) -> pl.DataFrame:
    c = {"rows_read": 0, "rejected": 0, "unknown_patent": 0, "repeated_pair": 0, "written": 0}
    ids = patents
    parts: list[Path] = []
    symbols: list[pl.DataFrame] = []
    for i, bucket in enumerate(_bucket_dirs(staged)):
        df = _good_rows(src, bucket, rejects, c, [
            pl.col("patent_id").str.strip_chars().alias("p"),
            pl.col("cpc_group").str.strip_chars().str.replace_all(" ", "").alias("sym"),
            pl.col("cpc_sequence").str.strip_chars().cast(pl.Int64).alias("seq"),
            pl.col("cpc_type").alias("type"),
        ])
        n0 = df.height
        df = df.join(ids, left_on="p", right_on="id", how="semi")
        c["unknown_patent"] += n0 - df.height
        n1 = df.height
        df = _first_by_sequence(df, ["p", "sym"])
        c["repeated_pair"] += n1 - df.height
        part = tmp / "work" / f"classified-{i}.csv"
        df.select("p", "sym", "seq", "type").write_csv(part, include_header=False)
        c["written"] += df.height
        symbols.append(df.select("sym").unique())
        parts.append(part)
    _concat(parts, tmp / "classified_as.csv")
    counts["cpc"] = c
    return pl.concat(symbols).unique() if symbols else pl.DataFrame(schema={"sym": pl.String})


def _cpc_titles(sources: dict[str, Source], staged: dict[str, Path], counts: dict[str, dict[str, int]],
                rejects: list[pl.DataFrame]) -> dict[str, str]:
    titles: dict[str, str] = {}
    if "cpc_group" in sources:
        good, bad = _split(sources["cpc_group"], _scan(staged["cpc_group"]), rejects, "id")
        for sym, title in good.select("id", "title").collect().iter_rows():
            titles[sym.strip()] = title or ""
        counts["cpc_group_titles"] = {"rows_read": len(titles) + bad, "rejected": bad}
    if "g_cpc_title" in sources:
        good, bad = _split(sources["g_cpc_title"], _scan(staged["g_cpc_title"]), rejects, "cpc_group")
        df = good.collect()
        for code_col, title_col in (("cpc_class", "cpc_class_title"), ("cpc_subclass", "cpc_subclass_title"),
                                    ("cpc_group", "cpc_group_title")):
            for sym, title in df.select(code_col, title_col).unique(code_col).iter_rows():
                if sym and title:
                    titles[sym.strip()] = title
        counts["cpc_titles"] = {"rows_read": df.height + bad, "rejected": bad}
    return titles


def _hierarchy(symbols: pl.DataFrame, titles: dict[str, str], tmp: Path,
               counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """CPC nodes from the symbols in use, each level PART_OF its parent."""
    s = symbols.filter(pl.col("sym").str.contains(r"^[A-HY]\d\d[A-Z]\d+/\d+$"))
    counts["cpc"]["malformed_symbol"] = symbols.height - s.height
    s = s.with_columns(
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


def _concat(parts: list[Path], out: Path) -> None:
    with out.open("wb") as dst:
        for p in parts:
            with p.open("rb") as src:
                shutil.copyfileobj(src, dst, length=16 << 20)
            p.unlink()
