"""What the ETL writes and shares between its parts: file names and headers, batch sizes, row status
codes, the rejects, and :class:`EtlRun`, which carries one run's counts and rejected rows.

Example::

    run = EtlRun(say=print)
    run.counts["patents"] = {"rows_read": 10, "written": 9}
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from patentminer.etl.sources import REASON, ROW

if TYPE_CHECKING:
    from patentminer.etl.sources import Table

#: Version of the import-CSV layout and graph model; bump when either changes (2: CLASSIFIED_AS carries its
#: patent's rk and bucket and its subgroup's number, CPCSubgroup its number).
IMPORT_FORMAT = 2
SCHEMA_NAME = "schema"
DATE_RE = r"^(1[7-9]\d\d|20\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
#: Bytes of source table per hash partition when a relationship table must be regrouped on disk.
BUCKET_BYTES = 256 << 20
#: Bytes of CSV per range of the spills that put classified_as.csv and patents.csv in CPC order. Two
#: ranges are mapped at a time (one read, one written), so this bounds the text phase's memory
#: (benchmarks/RESULTS.md, "ETL: spills").
CLUSTER_BYTES = 32 << 20

#: Output files the ETL owns in OUT_DIR (data file, header line).
#: Patent columns lead with rk, date and id: neo4j-admin import stores properties in column order and a
#: read walks the property chain from its start, so the three that mining reads for every candidate
#: come first (benchmarks/RESULTS.md, "Mining: store layout"). CLASSIFIED_AS carries its patent's rk and
#: bucket and its subgroup's number (sg, also on the CPCSubgroup node): an index on (sg, b) lets mining read
#: a slice of a subgroup's patents instead of all of them (cypher/queries/schema, citation-cpc@v5).
NODE_FILES: dict[str, tuple[str, str]] = {
    "Patent": ("patents.csv", "rk:long,date:date,id:ID(Patent),year:int,type,kind,num_claims:int,title,abstract"),
    "CPCSection": ("cpc_sections.csv", "code:ID(CPCSection)"),
    "CPCClass": ("cpc_classes.csv", "code:ID(CPCClass),title"),
    "CPCSubclass": ("cpc_subclasses.csv", "code:ID(CPCSubclass),title"),
    "CPCGroup": ("cpc_groups.csv", "code:ID(CPCGroup),title"),
    "CPCSubgroup": ("cpc_subgroups.csv", "code:ID(CPCSubgroup),sg:int,title"),
}
REL_FILES: dict[str, list[tuple[str, str]]] = {
    "CITES": [("cites.csv", ":START_ID(Patent),:END_ID(Patent),sequence:int,category,date:date")],
    "CLASSIFIED_AS": [("classified_as.csv",
                       ":START_ID(Patent),:END_ID(CPCSubgroup),rk:long,sg:int,b:int,sequence:int,type")],
    "PART_OF": [
        ("part_of_class.csv", ":START_ID(CPCClass),:END_ID(CPCSection)"),
        ("part_of_subclass.csv", ":START_ID(CPCSubclass),:END_ID(CPCClass)"),
        ("part_of_group.csv", ":START_ID(CPCGroup),:END_ID(CPCSubclass)"),
        ("part_of_subgroup.csv", ":START_ID(CPCSubgroup),:END_ID(CPCGroup)"),
    ],
}
OWNED = [f for f, _ in NODE_FILES.values()] + [f for fs in REL_FILES.values() for f, _ in fs] + ["rejects.tsv"]


Progress = Callable[[str], None]


def header_name(data_file: str) -> str:
    return data_file.replace(".csv", ".header.csv")


#: Bytes of source file each Polars CSV reader task takes at once: smaller than Polars' default, which
#: holds twice the memory while streaming the citation table at the same speed (benchmarks/RESULTS.md).
CSV_CHUNK_BYTES = 4 << 20


@contextmanager
def csv_chunks() -> Iterator[None]:
    """Polars reads POLARS_CSV_CHUNK_SIZE when a query starts; a value the user set is kept."""
    if "POLARS_CSV_CHUNK_SIZE" in os.environ:
        yield
        return
    os.environ["POLARS_CSV_CHUNK_SIZE"] = str(CSV_CHUNK_BYTES)
    try:
        yield
    finally:
        os.environ.pop("POLARS_CSV_CHUNK_SIZE", None)


#: Rows per batch of the streamed relationship tables (memory is a few batches, whatever the table size).
BATCH = 250_000
#: Rows per batch of the patent and abstract passes (their rows are ~10x wider than citation rows).
TEXT_BATCH = 100_000
PROGRESS_ROWS = 10_000_000
#: Row status while streaming: kept or rejected (unparseable); other codes are drop reasons.
KEEP, REJECTED = 0, -1
#: Columns every streamed relationship frame carries besides its payload.
GROUP_HASH, PAIR_HASH, STATUS = "__gh", "__ph", "__st"
#: Whether a row is written (False: dropped and counted). Rows are filtered once, when written, not after
#: every step (each filter copies the batch).
KEEP_COLUMN = "__keep"


def reject_frame(table: Table, bad: pl.DataFrame, key: str) -> pl.DataFrame:
    """Rejected rows (``__row``, ``__reason``, ``key``) as rejects.tsv rows with their physical lines."""
    return pl.DataFrame({"source": [table.source.path.name] * bad.height, "line": table.line_numbers(bad[ROW]),
                         "reason": bad[REASON], "key": bad[key].fill_null("")})


@dataclass
class EtlRun:
    """One run's running record: the counts of every table and the rows rejected so far, and where
    progress messages go. Every stage adds to it instead of threading the three through its arguments."""

    say: Progress = field(default=lambda _m: None)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects: list[pl.DataFrame] = field(default_factory=list)

    def reject(self, table: Table, bad: pl.DataFrame, key: str) -> None:
        if bad.height:
            self.rejects.append(reject_frame(table, bad, key))
