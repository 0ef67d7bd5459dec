"""Reading a mined dataset: the format check, the splits, the memory-mapped text store, the benchmark.

Nothing here loads a split's texts into memory: rows hold ids, and a text is read from
``texts.arrow`` (memory-mapped) when a batch asks for it.

Example::

    data = MinedDataset.open(Path("runs/hard"))
    train = data.split("train")                      # ids only
    store = data.texts()
    store.get(store.rows(train["anchor_id"].head(2)))  # two texts
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from patentminer.dataset.assemble import FORMAT
from patentminer.errors import ConfigError, InputError

SPLITS = ("train", "dev", "test")


class TextStore:
    """``texts.arrow`` memory-mapped: patent ids and their texts, read a row at a time.

    Pickled by path (a data-loader worker maps the file again instead of receiving a copy).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open()

    def _open(self) -> None:
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(self.path), "r"))
        except (OSError, pa.ArrowInvalid) as e:
            raise InputError(f"{self.path} is not a patentminer text store ({e}); mine the dataset again.") from e
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        self.batch = int((reader.schema.metadata or {}).get(b"rows_per_batch", b"0"))
        if self.batch < 1 or any(b.num_rows != self.batch for b in batches[:-1]):
            raise InputError(f"{self.path} is not a patentminer text store (no fixed rows per batch); mine the "
                             "dataset again.")
        self._texts = [b.column(1) for b in batches]
        ids = pl.from_arrow(pa.chunked_array([b.column(0) for b in batches], type=pa.string()))
        self.ids = (ids if isinstance(ids, pl.Series) else pl.Series("id", [], pl.String)).alias("id")
        self._index = pl.DataFrame({"id": self.ids}).with_row_index("row")

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._open()

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: pl.Series) -> np.ndarray:
        """The row of each id (int64); an id the store lacks is an :class:`InputError`."""
        found = pl.DataFrame({"id": ids}).join(self._index, on="id", how="left", maintain_order="left")["row"]
        if found.null_count():
            missing = ids.filter(found.is_null())[0]
            raise InputError(f"{self.path} has no text for patent {missing!r}; the dataset is incomplete: mine it "
                             "again.")
        return found.cast(pl.Int64).to_numpy()

    def get(self, rows: Iterable[int]) -> list[str]:
        """The texts of ``rows`` (from :meth:`rows`), in order."""
        size = self.batch
        return [self._texts[r // size][r % size].as_py() for r in rows]


@dataclass(frozen=True)
class Benchmark:
    """The evaluation set: ``kind`` is ``citation`` or ``cpc``; ``heldout`` (id, text, cpc) feeds kNN."""

    kind: str
    queries: pl.DataFrame
    corpus: pl.DataFrame
    relevant: dict[str, set[str]]
    heldout: pl.DataFrame
    info: dict[str, Any]

    def describe(self) -> str:
        """What the benchmark is, in one sentence a report can print."""
        i = self.info
        if self.kind == "citation":
            what = (f"citation retrieval: {self.queries.height:,} test patents (a seeded sample of "
                    f"{i['test_anchors']:,} test anchors, granted on or after {i['test_from']}) query "
                    f"{self.corpus.height:,} patents: the "
                    f"{i['relevant']:,} they cite (relevant) and {i['distractors']:,} seeded distractors granted "
                    f"before {i['test_from']}")
        else:
            what = (f"CPC retrieval (the data has no citations to judge by): {self.queries.height:,} held-out "
                    f"patents query {self.corpus.height:,} held-out patents (granted on or after {i['test_from']}, "
                    "a seeded sample); relevant: those sharing the query's first CPC subgroup")
        return (f"{what}; {sum(len(v) for v in self.relevant.values()):,} relevant pairs. kNN CPC-subclass accuracy: "
                f"{self.heldout.height:,} held-out patents (granted on or after {i['test_from']}, in no training row), "
                "5-fold.")


@dataclass(frozen=True)
class MinedDataset:
    """A ``patentminer mine`` output of the current format."""

    path: Path
    info: dict[str, Any]

    @staticmethod
    def open(path: Path) -> MinedDataset:
        meta = path / "dataset.json"
        if not meta.exists():
            hint = (" (an interrupted mining run has none yet: run it again to finish)"
                    if (path / "parts").exists() else "")
            raise ConfigError(f"{path} has no dataset.json{hint}; point at a `patentminer mine` output.")
        try:
            info = json.loads(meta.read_text())
        except ValueError as e:
            raise InputError(f"{meta} is not valid JSON ({e}); mine the dataset again.") from e
        fmt = info.get("format")
        if fmt != FORMAT:
            raise ConfigError(f"{path} holds dataset format {fmt} (texts in every row, an unbounded benchmark); "
                              f"this patentminer reads format {FORMAT}: mine it again with `patentminer mine ... "
                              "--overwrite`.")
        for name in (*[f"{s}.parquet" for s in SPLITS], "texts.arrow"):
            if not (path / name).exists():
                raise InputError(f"{path} has no {name}; the dataset is incomplete: mine it again.")
        columns = pl.read_parquet_schema(path / "train.parquet")
        for needed in ("anchor_id", "positive_id", "negative_1_id"):
            if needed not in columns:
                raise InputError(f"{path}/train.parquet lacks column {needed!r}; a split holds anchor_id, positive_id "
                                 "and negative_1_id..negative_K_id (as `patentminer mine` writes them).")
        return MinedDataset(path, info)

    def split(self, name: str) -> pl.DataFrame:
        """A split's rows: ``anchor_id, positive_id, negative_1_id..negative_K_id, level``."""
        return pl.read_parquet(self.path / f"{name}.parquet")

    def split_texts(self, name: str, limit: int | None = None) -> pl.DataFrame:
        """A split with a text column beside each id column (``anchor_id`` -> ``anchor``), for a look at the
        rows or a small export: memory grows with the rows asked for (``limit``; None: all of them)."""
        rows = self.split(name) if limit is None else pl.read_parquet(self.path / f"{name}.parquet", n_rows=limit)
        store = self.texts()
        ids = [c for c in rows.columns if c.endswith("_id")]
        return rows.with_columns(pl.Series(c.removesuffix("_id"), store.get(store.rows(rows[c]))) for c in ids)

    @property
    def negatives(self) -> int:
        """K, the negatives per row."""
        columns = pl.read_parquet_schema(self.path / "train.parquet")
        return sum(1 for c in columns if re.fullmatch(r"negative_\d+_id", c))

    def texts(self) -> TextStore:
        return TextStore(self.path / "texts.arrow")

    def benchmark(self) -> Benchmark:
        ev = self.path / "eval"
        for f in ("queries", "corpus", "qrels", "heldout"):
            if not (ev / f"{f}.parquet").exists():
                raise InputError(f"{self.path} has no eval/{f}.parquet; the dataset is incomplete: mine it again.")
        relevant: dict[str, set[str]] = {}
        for q, c in pl.read_parquet(ev / "qrels.parquet").select("query_id", "corpus_id").iter_rows():
            relevant.setdefault(q, set()).add(c)
        info = dict(self.info.get("eval") or {})
        return Benchmark(info.get("kind", "citation"), pl.read_parquet(ev / "queries.parquet"),
                         pl.read_parquet(ev / "corpus.parquet"), relevant, pl.read_parquet(ev / "heldout.parquet"),
                         info)
