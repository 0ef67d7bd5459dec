"""The CPC hierarchy nodes (section, class, subclass, main group, subgroup) and their titles.

Example::

    titles = cpc_titles(tables, run)
    counts = hierarchy(symbols_in_use, titles, tmp)   # writes the cpc_*.csv and part_of_*.csv files
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from patentminer.etl.contract import NODE_FILES, EtlRun
from patentminer.etl.sources import REASON, Table


def cpc_titles(tables: dict[str, Table], run: EtlRun) -> dict[str, str]:
    """Titles by CPC code from the optional title tables (cpc_group, g_cpc_title)."""
    titles: dict[str, str] = {}
    for name, key in (("cpc_group", "id"), ("g_cpc_title", "cpc_group")):
        if name not in tables:
            continue
        t = tables[name]
        df = t.run(lambda t: t.scan().collect())
        t.rows = df.height
        bad = df.filter(pl.col(REASON).is_not_null())
        good = df.filter(pl.col(REASON).is_null())
        run.reject(t, bad, key)
        if name == "cpc_group":
            for sym, title in good.select("id", "title").iter_rows():
                titles[sym.strip()] = title or ""
            run.counts["cpc_group_titles"] = {"rows_read": df.height, "rejected": bad.height}
            continue
        for code_col, title_col in (("cpc_class", "cpc_class_title"), ("cpc_subclass", "cpc_subclass_title"),
                                    ("cpc_group", "cpc_group_title")):
            for sym, title in good.select(code_col, title_col).unique(code_col).iter_rows():
                if sym and title:
                    titles[sym.strip()] = title
        run.counts["cpc_titles"] = {"rows_read": df.height, "rejected": bad.height}
    return titles


def hierarchy(symbols: pl.DataFrame, titles: dict[str, str], tmp: Path, names: pl.Series) -> dict[str, int]:
    """CPC nodes from the symbols in use (well-formed: see :func:`patentminer.etl.relations.cpc`), each level
    PART_OF its parent. A subgroup's number (``sg``) is its symbol's place in ``names``, every symbol of the
    CPC table, sorted: the number its CLASSIFIED_AS relationships carry."""
    s = symbols.with_columns(
        grp=pl.col("sym").str.split("/").list.first() + "/00",
        sub=pl.col("sym").str.slice(0, 4), cls=pl.col("sym").str.slice(0, 3), sec=pl.col("sym").str.slice(0, 1))
    title = lambda col: pl.col(col).replace_strict(titles, default=None, return_dtype=pl.String)  # noqa: E731
    levels = {
        "CPCSection": s.select(pl.col("sec").alias("code")).unique(),
        "CPCClass": s.select(pl.col("cls").alias("code"), title("cls").alias("title")).unique("code"),
        "CPCSubclass": s.select(pl.col("sub").alias("code"), title("sub").alias("title")).unique("code"),
        "CPCGroup": s.select(pl.col("grp").alias("code"), title("grp").alias("title")).unique("code"),
        "CPCSubgroup": s.select(pl.col("sym").alias("code"), title("sym").alias("title")).unique("code").join(
            pl.DataFrame({"code": names}).with_row_index("sg").with_columns(pl.col("sg").cast(pl.Int32)),
            on="code", how="left").select("code", "sg", "title"),
    }
    out: dict[str, int] = {}
    for label, df in levels.items():
        df.sort("code").write_csv(tmp / NODE_FILES[label][0], include_header=False)
        out[label] = df.height
    for f, child, parent in (("part_of_class.csv", "cls", "sec"), ("part_of_subclass.csv", "sub", "cls"),
                             ("part_of_group.csv", "grp", "sub"), ("part_of_subgroup.csv", "sym", "grp")):
        s.select(child, parent).unique(child).sort(child).write_csv(tmp / f, include_header=False)
    return out
