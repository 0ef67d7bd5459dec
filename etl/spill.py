"""Range partitions on disk that put rows in CPC order: :class:`RankSpill` and :class:`Order`.

The ETL writes classified_as.csv in CPC symbol order and patents.csv in the order of each patent's
first symbol (the layout mining reads fastest, see :class:`Order`). Rows arrive in source order, so they
are spilled by rank range as they stream and each range is sorted when it is read back: memory is one
range, whatever the table size.

Example::

    spill = RankSpill(work, "classified_as", ranks=1000, parts=4)
    spill.add(frame_with___rank)
    spill.write_csv(Path("classified_as.csv"))
"""

from __future__ import annotations

import itertools
import math
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from patentminer.etl.contract import CLUSTER_BYTES


class RankSpill:
    """Rows with an integer ``__rank`` in [0, ranks], spilled to disk in ``parts`` rank ranges and
    read back a range at a time, each once (:meth:`take`; rows of one rank keep the order they came in).
    Memory is one range.

    Each range is one file that every batch appends an Arrow IPC stream to: a file per range and batch
    made thousands of files per table at full scale (benchmarks/RESULTS.md, "ETL: spills").
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
        return max(1, math.ceil(expected_bytes / CLUSTER_BYTES))

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

        Freeing them at once lets the output written next reuse its page-cache pages: writing into
        pages the kernel has not used lately is several times slower on some VMs (benchmarks/RESULTS.md,
        "ETL: spills").
        """
        self._close()
        ends = self.ends.pop(k, None)
        if not ends:
            return None
        path = self.dir / f"{k}.arrows"
        # Mapped, not read: Arrow reads the streams in place (their strings stay in the page cache until
        # the frame is dropped), where reading and parsing the bytes copied every byte twice. Unlinked at
        # once: the pages go when the mapping does.
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
class Order:
    """The file order that lays the graph out for mining (what the graph holds does not change).

    neo4j-admin import stores nodes and relationships in file order, and mining walks every patent
    of a subgroup (then of its main group and subclass), reading the relationship, the node and its
    first property record of each. classified_as.csv in CPC symbol order and patents.csv in the
    order of each patent's first symbol (patents without one last) put those records side by side
    instead of spreading them over the stores (benchmarks/RESULTS.md, "Mining: store layout").
    Symbols are ranked by sort order, so the sorts are on integers.
    """

    ranks: int
    first: pl.DataFrame

    def patent_rank(self, df: pl.DataFrame) -> pl.Series:
        joined = df.select("id").join(self.first, on="id", how="left", maintain_order="left")
        return joined["__r"].cast(pl.Int64).fill_null(self.ranks).alias("__rank")
