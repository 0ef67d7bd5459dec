"""Finding, checking and scanning PatentsView source tables.

Tables are scanned lazily by Polars with a declared all-string schema (ids are
strings, always) and two extra columns: ``__row`` (the data row, in source order) and
``__reason`` (why the row is rejected, or null). Physical line numbers are worked out
only for rejected rows (``Table.line_numbers``).
"""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import blake3
import numpy as np
import polars as pl

from patentminer.errors import InputError

ROW = "__row"
NL = "__nl"
REASON = "__reason"
EXTRA = "__extra"
T = TypeVar("T")


@dataclass(frozen=True)
class TableSpec:
    """A PatentsView table: the columns we need and how to validate a row."""

    name: str
    required: tuple[str, ...]
    ids: tuple[str, ...] = ()
    ints: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    #: A missing last field means the row was cut short; not for tables whose last field may be empty.
    last_field_required: bool = True
    needed: bool = True
    alternatives: tuple[str, ...] = field(default_factory=tuple)


SPECS: dict[str, TableSpec] = {
    "g_patent": TableSpec(
        "g_patent",
        ("patent_id", "patent_type", "patent_date", "patent_title", "wipo_kind", "num_claims", "withdrawn",
         "filename"),
        ids=("patent_id",), ints=("num_claims", "withdrawn"), optional=("patent_abstract",)),
    "g_patent_abstract": TableSpec("g_patent_abstract", ("patent_id", "patent_abstract"), ids=("patent_id",),
                                   last_field_required=False, needed=False),
    "g_us_patent_citation": TableSpec(
        "g_us_patent_citation",
        ("patent_id", "citation_sequence", "citation_patent_id", "citation_date", "record_name", "wipo_kind",
         "citation_category"),
        ids=("patent_id", "citation_patent_id"), ints=("citation_sequence",)),
    "g_cpc_current": TableSpec(
        "g_cpc_current",
        ("patent_id", "cpc_sequence", "cpc_section", "cpc_class", "cpc_subclass", "cpc_group", "cpc_type"),
        ids=("patent_id", "cpc_group"), ints=("cpc_sequence",)),
    "g_cpc_title": TableSpec(
        "g_cpc_title",
        ("cpc_subclass", "cpc_subclass_title", "cpc_group", "cpc_group_title", "cpc_class", "cpc_class_title"),
        ids=("cpc_group",), needed=False, last_field_required=False),
    "cpc_group": TableSpec("cpc_group", ("id", "title"), ids=("id",), needed=False, last_field_required=False),
}


@dataclass(frozen=True)
class Source:
    """One source table found in SOURCE_DIR."""

    spec: TableSpec
    path: Path  # the .tsv or .tsv.zip as the user has it
    header: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.path.name


def find_sources(source_dir: Path) -> dict[str, Source]:
    """The tables present in ``source_dir``, checked for header, delimiter and columns.

    Raises InputError naming the file and what would be valid.
    """
    if not source_dir.is_dir():
        raise InputError(f"SOURCE_DIR {source_dir} is not a directory; give the folder holding the "
                         "PatentsView .tsv or .tsv.zip files.")
    found: dict[str, Source] = {}
    for name, spec in SPECS.items():
        path = next((p for p in (source_dir / f"{name}.tsv", source_dir / f"{name}.tsv.zip") if p.exists()), None)
        if path is None:
            if spec.needed:
                raise InputError(f"{source_dir}/{name}.tsv (or {name}.tsv.zip) is missing; download it from "
                                 "PatentsView's granted-patent bulk tables.")
            continue
        header = read_header(path)
        missing = [c for c in spec.required if c not in header]
        if missing:
            raise InputError(f"{path}: missing column {missing[0]!r} (line 1 has: {', '.join(header)}); "
                             f"{name} needs {', '.join(spec.required)}.")
        found[name] = Source(spec, path, header)
    if "patent_abstract" not in found["g_patent"].header and "g_patent_abstract" not in found:
        raise InputError(f"{source_dir}/g_patent_abstract.tsv is missing and g_patent has no patent_abstract "
                         "column; download g_patent_abstract too (or use an older g_patent with abstracts).")
    return found


def _open_text(path: Path) -> io.BufferedReader:
    if path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        members = [m for m in zf.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise InputError(f"{path}: expected one .tsv inside the archive, found {len(members)}.")
        return zf.open(members[0])  # type: ignore[return-value]
    return path.open("rb")


def read_header(path: Path) -> tuple[str, ...]:
    try:
        with _open_text(path) as fh:
            first = fh.readline()
    except zipfile.BadZipFile as e:
        raise InputError(f"{path}: not a readable zip archive ({e}).") from e
    if not first.strip():
        raise InputError(f"{path} is empty; expected a header line of tab-separated column names.")
    text = first.decode("utf-8", errors="replace").rstrip("\r\n")
    if "\t" not in text:
        sep = next((s for s in (",", ";", "|") if s in text), None)
        found = f"found {sep!r} instead" if sep else "found a single column"
        raise InputError(f"{path}: line 1 is not tab-separated ({found}); PatentsView tables are .tsv files "
                         "with a tab between columns.")
    return tuple(next(csv.reader([text], delimiter="\t")))


def file_digest(path: Path) -> tuple[str, int]:
    """("blake3:<hex>", newline bytes in the file, counting a last line without one).

    BLAKE3 rather than SHA-256: as strong for provenance, and a third of the CPU on the
    1.4 GB of a 1M-patent dump (it runs beside the parsing, on the same two cores).
    """
    h = blake3.blake3()
    n = count_newlines(path, h.update)
    return "blake3:" + h.hexdigest(), n


def materialize(source: Source, work: Path) -> Path:
    """A plain .tsv path for Polars, which reads no .zip: the member is streamed out to ``work``."""
    if source.path.suffix != ".zip":
        return source.path
    out = work / (source.spec.name + ".tsv")
    with _open_text(source.path) as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=16 << 20)
    return out


def sanitize(path: Path, out: Path, n_cols: int) -> Path:
    """Rewrite a file Polars cannot parse, record by record, with every field quoted.

    Only used when Polars gives up on malformed quoting; Python's csv module accepts a
    stray quote inside an unquoted field as text. Records keep their field count, so a
    ragged row is still rejected later with its line number.
    """
    with path.open("r", encoding="utf-8", errors="replace", newline="") as src, \
            out.open("w", encoding="utf-8", newline="") as dst:
        reader = csv.reader(src, delimiter="\t", quotechar='"', strict=False)
        writer = csv.writer(dst, delimiter="\t", quotechar='"', quoting=csv.QUOTE_ALL, lineterminator="\n")
        for record in reader:
            writer.writerow(record)
    return out


def scan(source: Source, path: Path, newlines: bool = False) -> pl.LazyFrame:
    """A lazy scan of ``path`` (the parseable copy of ``source``) with ``__row`` and ``__reason`` added.

    ``newlines`` adds ``__nl``, the newlines inside each row's fields (costly on big tables:
    only where line numbers need it).
    """
    spec = source.spec
    header = source.header
    schema = {c: pl.String for c in header} | {EXTRA: pl.String}
    lf = pl.scan_csv(path, separator="\t", quote_char='"', has_header=False, skip_rows=1, schema=schema,
                     encoding="utf8-lossy", truncate_ragged_lines=True, missing_columns="insert",
                     row_index_name=ROW)
    # Ids and numbers are stripped once here; everything downstream uses them as they are.
    lf = lf.with_columns(pl.col(c).str.strip_chars() for c in dict.fromkeys((*spec.ids, *spec.ints)))
    n = len(header)
    reason: Any = pl.when(pl.col(EXTRA).is_not_null()).then(pl.lit(f"wrong column count: more than {n} fields"))
    if spec.last_field_required:
        reason = reason.when(pl.col(header[-1]).is_null()).then(pl.lit(f"wrong column count: fewer than {n} fields"))
    for c in spec.ids:
        reason = reason.when(pl.col(c).is_null() | (pl.col(c) == "")).then(pl.lit(f"missing {c}"))
    for c in spec.ints:
        reason = reason.when(pl.col(c).is_not_null() & pl.col(c).str.to_integer(strict=False).is_null()).then(
            pl.format(f"unparseable {c} '{{}}'", pl.col(c)))
    lf = lf.with_columns(reason.otherwise(None).alias(REASON))
    if newlines:
        nl = pl.sum_horizontal([pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in header])
        lf = lf.with_columns(nl.cast(pl.Int64).alias(NL))
    return lf.drop(EXTRA)


@dataclass
class Table:
    """A source table and the plain .tsv Polars reads for it (the zip member, or a sanitized copy).

    ``run`` retries a pass on a sanitized copy when Polars stops on malformed quoting.
    """

    source: Source
    work: Path
    path: Path = field(init=False)
    rows: int = 0
    #: Newlines in the user's file when known (the digest counts them), for line numbers.
    newlines: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        self.path = materialize(self.source, self.work)

    def scan(self, newlines: bool = False) -> pl.LazyFrame:
        return scan(self.source, self.path, newlines)

    def run(self, fn: Callable[[Table], T]) -> T:
        try:
            return fn(self)
        except pl.exceptions.ComputeError as e:
            if "malformed" not in str(e).lower() or self.path.name.endswith(".sanitized.tsv"):
                raise InputError(f"{self.source.path}: cannot be parsed as TSV ({str(e).splitlines()[0]}).") from e
        clean = sanitize(self.path, self.work / f"{self.source.spec.name}.sanitized.tsv", len(self.source.header))
        self.discard()
        self.path = clean
        return fn(self)

    def discard(self) -> None:
        """Remove the copy made for Polars (never the user's file)."""
        if self.path != self.source.path:
            self.path.unlink(missing_ok=True)

    def line_numbers(self, rows: pl.Series) -> pl.Series:
        """Physical 1-based line numbers (the header is line 1) of the given data rows.

        A row's line is its index + 2 plus the newlines inside the fields of the rows before
        it. Most big tables have no such newline, which one count over the bytes tells;
        otherwise the rows up to the last one asked for are scanned once more.
        """
        rows = rows.cast(pl.Int64)
        known = self.newlines is not None and self.path == self.source.path
        newlines = self.newlines() if known and self.newlines else count_newlines(self.path)
        if rows.is_empty() or newlines == self.rows + 1:
            return (rows + 2).alias("line")
        multi = (self.scan(newlines=True).head(int(rows.max()) + 1)  # type: ignore[arg-type]
                 .filter(pl.col(NL) > 0).select(ROW, NL).collect().sort(ROW))
        cum = multi[NL].cum_sum()
        idx = multi[ROW].cast(pl.Int64).search_sorted(rows, side="left")
        before = pl.Series([0], dtype=pl.Int64).append(cum.cast(pl.Int64)).gather(idx)
        return (rows + 2 + before).alias("line")


def count_newlines(path: Path, each_block: Callable[[bytes], object] | None = None) -> int:
    """Newline bytes in ``path``, counting a last line without one; ``each_block`` sees every block read."""
    n = 0
    last = b"\n"
    with path.open("rb") as fh:
        while block := fh.read(16 << 20):
            if each_block:
                each_block(block)
            n += int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == 10))
            last = block[-1:]
    return n + (last != b"\n")
