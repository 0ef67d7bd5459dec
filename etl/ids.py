"""Patent ids as integers: keys for membership tests, and the rank key ``rk`` that mining orders by.

Hashing 150M id strings against a set of 9M strings is most of the cost of cleaning the
citation table; integers are about ten times cheaper. Plain numeric ids without a leading
zero (utility patents, over 90% of rows) are their own key; every other id (``D900001``,
``PP12345``, ``RE48000``, a number with leading zeros) has no key and is compared as a
string against the few such ids of the graph. Both are exact: there is no hashing.

Example::

    index = IdIndex.build(pl.Series(["3930271", "D900001"]))
    index.contains(pl.Series(["3930271", "D900001", "9"]))  # [True, True, False]
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

_LIMIT = 10**15


def with_fast_key(frame: pl.LazyFrame, column: str, name: str) -> pl.LazyFrame:
    """``frame`` with ``name``: the key of each plain numeric id in ``column``, null for every other id.

    Built as columns, one step after another: Polars evaluates an expression used twice twice, and
    the integer parse is most of the cost (benchmarks/RESULTS.md, "ETL: membership").
    """
    s = pl.col(column)
    k = pl.col(name)
    return frame.with_columns(s.str.to_integer(strict=False).alias(name)).with_columns(
        pl.when(~s.str.starts_with("0") & ~s.str.starts_with("+") & (k > 0) & (k < _LIMIT)).then(k).alias(name))


@dataclass(frozen=True)
class IdIndex:
    """The patent ids of the graph: sorted integer keys, plus the ids without a key as strings."""

    keys: pl.Series
    other: pl.Series

    @classmethod
    def build(cls, ids: pl.Series) -> IdIndex:
        frame = with_fast_key(pl.LazyFrame({"id": ids}), "id", "k").collect()
        keys = frame["k"].drop_nulls().unique().sort()
        other = frame.filter(pl.col("k").is_null())["id"].drop_nulls().unique().sort()
        return cls(keys, other)

    def with_member(self, frame: pl.LazyFrame, column: str, name: str) -> pl.LazyFrame:
        """``frame`` with ``name``: exact membership of each id of ``column`` (null ids are not members),
        for a streaming query.

        The string test runs on every row (an expression has no lazy branch), yet costs less than settling
        the rows without a key afterwards in Python (benchmarks/RESULTS.md, "ETL: membership").
        """
        key = pl.col(name)
        return with_fast_key(frame, column, name).with_columns(
            pl.when(key.is_null()).then(pl.col(column).is_in(self.other.implode()))
            .otherwise(key.is_in(self.keys.implode())).fill_null(False).alias(name))

    def contains(self, ids: pl.Series) -> pl.Series:
        """Exact membership of each id in a Series (null ids are not members)."""
        return self.with_member(pl.LazyFrame({"id": ids}), "id", "member").collect()["member"]


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
    are not plain numbers: for those (over 90%) the key is the number's, plus one.
    """
    frame = with_fast_key(pl.LazyFrame({"id": ids}), "id", "__k").with_columns(
        ((pl.col("__k") % 200_000_000) + 1).clip(upper_bound=2_147_483_646).alias("rk")).collect()
    others = frame["__k"].is_null()
    if not others.any():
        return frame["rk"].cast(pl.Int32)
    slow = pl.select(rank_key(pl.lit(ids.filter(others)))).to_series()
    return frame["rk"].scatter(others.arg_true(), slow).cast(pl.Int32)


#: Buckets a subgroup's patents are spread over (CLASSIFIED_AS.b): mining reads a range of them at a time, a
#: slice of a subgroup small enough to read whatever the subgroup's size, through the (sg, b) index.
BUCKETS = 4096


def buckets(rk: pl.Series) -> pl.Series:
    """Each patent's bucket in [0, BUCKETS) (Int32): a multiplicative hash of its rk, so that a range of buckets
    holds a pseudo-random share of any subgroup, spread over every grant year."""
    return (((rk.cast(pl.Int64) * 2654435761) % (1 << 32)) // ((1 << 32) // BUCKETS)).cast(pl.Int32).alias("b")
