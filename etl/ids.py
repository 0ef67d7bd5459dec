"""Integer keys for patent ids, so that membership tests run mostly on integers, not strings.

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


def fast_key(s: pl.Expr) -> pl.Expr:
    """The key of a plain numeric id (cheap enough for every row); null for every other id."""
    k = s.str.to_integer(strict=False)
    plain = ~s.str.starts_with("0") & ~s.str.starts_with("+") & (k > 0) & (k < _LIMIT)
    return pl.when(plain).then(k)


@dataclass(frozen=True)
class IdIndex:
    """The patent ids of the graph: sorted integer keys, plus the ids without a key as strings."""

    keys: pl.Series
    other: pl.Series

    @classmethod
    def build(cls, ids: pl.Series) -> IdIndex:
        frame = pl.DataFrame({"id": ids}).with_columns(fast_key(pl.col("id")).alias("k"))
        keys = frame["k"].drop_nulls().unique().sort()
        other = frame.filter(pl.col("k").is_null())["id"].drop_nulls().unique().sort()
        return cls(keys, other)

    def member(self, ids: pl.Expr) -> pl.Expr:
        """Exact membership of each id, as an expression for a streaming query (null ids are not members).

        The string test runs on every row (an expression has no lazy branch), yet costs less than
        settling the ~10% of rows without a key afterwards in Python: +0.2 s on 11M citation rows.
        """
        key = fast_key(ids)
        return (pl.when(key.is_null()).then(ids.is_in(self.other.implode())).otherwise(key.is_in(self.keys.implode()))
                .fill_null(False))

    def contains(self, ids: pl.Series) -> pl.Series:
        """Exact membership of each id in a Series (null ids are not members)."""
        return pl.DataFrame({"id": ids}).select(self.member(pl.col("id")))["id"]
