"""synth -> etl -> import against the real Neo4j, and the cleaning rules checked one by one in the graph."""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import blake3
import polars as pl
import pytest
from click.testing import CliRunner

from patentminer.cli import main
from patentminer.cypher.connection import Graph
from patentminer.cypher.importer import ImportOptions, compose_command, import_graph
from patentminer.cypher.runtime import Neo4jRuntime
from patentminer.errors import InputError, OutputExistsError
from patentminer.etl import convert, relations
from patentminer.etl import synth as synth_module
from patentminer.etl.convert import EtlOptions, run_etl
from patentminer.etl.ids import IdIndex, buckets, rank_key, rank_keys
from patentminer.etl.synth import SynthConfig, synth

SEED = 3


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth(out, SynthConfig(patents=3000, seed=SEED))
    return out


@pytest.fixture(scope="module")
def etl_out(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("import")
    result = CliRunner().invoke(main, ["etl", str(source), str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def imported(etl_out: tuple[Path, dict[str, Any]], runtime: Neo4jRuntime | None, graph: Graph) -> dict[str, Any]:
    out, _ = etl_out
    return import_graph(out, ImportOptions(overwrite=True), runtime=runtime)


def test_counts_equal_manifest(imported: dict[str, Any], etl_out: tuple[Path, dict[str, Any]],
                               graph: Graph) -> None:
    _, manifest = etl_out
    assert imported["matches_manifest"] is True
    assert imported["counts"] == manifest["graph"]
    assert imported["schema"] == "schema@v2"
    names = {r["name"] for r in graph.read("SHOW CONSTRAINTS YIELD name RETURN name")}
    assert {"patent_id", "cpc_subgroup_code", "cpc_group_code"} <= names


def test_text_with_tabs_newlines_quotes_and_bad_bytes_intact(imported: dict[str, Any], source: Path,
                                                             graph: Graph) -> None:
    patents = read_tsv(source / "g_patent.tsv")
    abstracts = {r["patent_id"]: r["patent_abstract"] for r in read_tsv(source / "g_patent_abstract.tsv")}
    withdrawn = {r["patent_id"] for r in patents if r["withdrawn"] == "1"}
    tab = next(r for r in patents if "\t" in r["patent_title"] and r["patent_id"] not in withdrawn)
    nl = next(i for i, a in abstracts.items() if "\n" in a and i not in withdrawn)
    quote = next(i for i, a in abstracts.items() if '"' in a and i not in withdrawn)
    bad = next(i for i, a in abstracts.items() if "\ufffd" in a and i not in withdrawn)
    got = {r["id"]: r for r in graph.read(
        "MATCH (p:Patent) WHERE p.id IN $ids RETURN p.id AS id, p.title AS title, p.abstract AS abstract",
        {"ids": [tab["patent_id"], nl, quote, bad]})}
    assert got[tab["patent_id"]]["title"] == tab["patent_title"]
    assert got[nl]["abstract"] == abstracts[nl] and "\n" in got[nl]["abstract"]
    assert got[quote]["abstract"] == abstracts[quote] and 'so-called "' in got[quote]["abstract"]
    assert "caf\ufffd is" in got[bad]["abstract"]


def test_patent_properties_and_ids(imported: dict[str, Any], graph: Graph) -> None:
    row = graph.read("MATCH (p:Patent {id: '3930272'}) RETURN p.date AS date, p.year AS year, p.type AS type, "
                     "p.kind AS kind, p.num_claims AS n, valueType(p.date) AS t")[0]
    assert row["year"] == 1976 and row["type"] == "utility" and isinstance(row["n"], int)
    assert row["t"].startswith("DATE")
    kinds = {r["prefix"] for r in graph.read(
        "MATCH (p:Patent) RETURN DISTINCT CASE WHEN p.id STARTS WITH 'PP' THEN 'PP' WHEN p.id STARTS WITH 'RE' "
        "THEN 'RE' WHEN p.id STARTS WITH 'D' THEN 'D' ELSE 'utility' END AS prefix")}
    assert kinds == {"utility", "D", "PP", "RE"}


def test_withdrawn_and_duplicate_ids(imported: dict[str, Any], source: Path, graph: Graph) -> None:
    patents = read_tsv(source / "g_patent.tsv")
    withdrawn = sorted({r["patent_id"] for r in patents if r["withdrawn"] == "1"})
    assert withdrawn
    assert graph.count("MATCH (p:Patent) WHERE p.id IN $ids RETURN count(p) AS c", {"ids": withdrawn}) == 0
    dup = next(r["patent_id"] for r in patents if r["patent_title"].startswith("DUPLICATE ROW")
               and r["patent_id"] not in withdrawn)
    first = next(r for r in patents if r["patent_id"] == dup)
    titles = graph.read("MATCH (p:Patent {id: $id}) RETURN p.title AS t", {"id": dup})
    assert titles == [{"t": first["patent_title"]}]


def test_citation_cleaning(imported: dict[str, Any], source: Path, graph: Graph) -> None:
    cites = read_tsv(source / "g_us_patent_citation.tsv")
    ids = {r["patent_id"] for r in read_tsv(source / "g_patent.tsv")}
    assert graph.count("MATCH (p:Patent)-[r:CITES]->(p) RETURN count(r) AS c") == 0
    assert any(r["patent_id"] == r["citation_patent_id"] for r in cites)
    dangling = sorted({r["citation_patent_id"] for r in cites if r["citation_patent_id"] not in ids})
    assert dangling
    assert graph.count("MATCH (p:Patent) WHERE p.id IN $ids RETURN count(p) AS c", {"ids": dangling}) == 0
    assert graph.count("MATCH (a)-[r:CITES]->(b) WITH a, b, count(r) AS n WHERE n > 1 RETURN count(*) AS c") == 0
    # Repeated pairs were injected with sequence + 1000: the lowest sequence must win.
    assert graph.count("MATCH ()-[r:CITES]->() WHERE r.sequence >= 1000 RETURN count(r) AS c") == 0
    # A bad or partial date drops the property, not the citation.
    pairs = [{"a": r["patent_id"], "b": r["citation_patent_id"]} for r in cites
             if r["citation_date"] in ("1995-00-00", "0000-00-00", "1987-13-01", "2003-06")
             and r["patent_id"] != r["citation_patent_id"]]
    found = graph.read("UNWIND $pairs AS x MATCH (:Patent {id: x.a})-[r:CITES]->(:Patent {id: x.b}) "
                       "RETURN r.date AS d, r.category AS c", {"pairs": pairs})
    assert len(found) > len(pairs) // 2  # most join two patents of the graph (the rest lost an end to cleaning)
    assert all(f["d"] is None for f in found)
    assert {f["c"] for f in found} <= {"cited by applicant", "cited by examiner", "cited by other"}
    assert graph.count("MATCH ()-[r:CITES]->() WHERE r.date IS NOT NULL RETURN count(r) AS c") > 0


def test_cpc_hierarchy_and_titles(imported: dict[str, Any], graph: Graph) -> None:
    broken = graph.count(
        "MATCH (s:CPCSubgroup) WHERE NOT (s)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(:CPCSubclass)"
        "-[:PART_OF]->(:CPCClass)-[:PART_OF]->(:CPCSection) RETURN count(s) AS c")
    assert broken == 0
    assert graph.count("MATCH (p:Patent)-[r:CLASSIFIED_AS]->(s:CPCSubgroup) WITH p, s, count(r) AS n "
                       "WHERE n > 1 RETURN count(*) AS c") == 0
    assert graph.count("MATCH (p:Patent {id: '999999999'}) RETURN count(p) AS c") == 0
    titled = graph.read("MATCH (g:CPCSubclass) RETURN g.code AS code, g.title AS title LIMIT 1")[0]
    assert titled["title"] and titled["title"].split(" (")[0].isupper()
    inv = graph.count("MATCH (:Patent)-[r:CLASSIFIED_AS {type: 'inventional'}]->() RETURN count(r) AS c")
    assert inv > 0
    # What mining reads from a subgroup's relationships: the patent's rk and bucket, the subgroup's number.
    assert graph.count("MATCH (p:Patent)-[r:CLASSIFIED_AS]->(s) WHERE r.rk IS NULL OR r.rk <> p.rk OR r.sg <> s.sg "
                       "OR NOT r.b IN range(0, 4095) RETURN count(r) AS c") == 0
    assert graph.count("MATCH (s:CPCSubgroup) RETURN count(DISTINCT s.sg) AS c") == graph.count(
        "MATCH (s:CPCSubgroup) RETURN count(s) AS c")
    slices = graph.read("MATCH ()-[r:CLASSIFIED_AS]->() RETURN DISTINCT r.b / 32 AS s")  # as mining reads them
    assert len(slices) == 128
    # Over a million consecutive rk values (ids come in runs), every slice gets its 1/128 within 1%.
    counts = (buckets(pl.Series(range(1, 1_000_001))) // 32).value_counts()["count"]
    share = 1_000_000 / 128
    assert counts.len() == 128 and 0.99 * share < counts.min() <= counts.max() < 1.01 * share


def test_files_in_cpc_order_for_mining(etl_out: tuple[Path, dict[str, Any]]) -> None:
    """classified_as.csv in symbol order (file order kept within a symbol) and patents.csv in the
    order of each patent's first symbol, patents without a CPC symbol last: mining reads them so."""
    out, _ = etl_out
    cpc = pl.read_csv(out / "classified_as.csv", has_header=False,
                      new_columns=["p", "sym", "rk", "sg", "b", "seq", "type"],
                      schema_overrides={"p": pl.String, "seq": pl.Int64})
    assert cpc["sym"].is_sorted()
    patent_cols = convert.NODE_FILES["Patent"][1].split(",")
    assert patent_cols[:3] == ["rk:long", "date:date", "id:ID(Patent)"]
    patents = pl.read_csv(out / "patents.csv", has_header=False, new_columns=convert._PATENT_COLUMNS,
                          infer_schema=False).with_row_index("pos")
    first = cpc.sort("p", "seq").unique("p", keep="first").select(pl.col("p").alias("id"), "sym")
    ordered = patents.join(first, on="id", how="left").sort("pos")
    assert ordered["sym"].drop_nulls().is_sorted()
    without = ordered["sym"].is_null()
    assert without.arg_true().to_list() == list(range(ordered.height - int(without.sum()), ordered.height))
    # Each CLASSIFIED_AS row carries its patent's rk (mining orders a subgroup's patents by it).
    rk = cpc.select("p", pl.col("rk").cast(pl.String)).join(patents.select(pl.col("id").alias("p"), pl.col("rk")),
                                                            on="p", suffix="_node")
    assert rk.height == cpc.height and (rk["rk"] == rk["rk_node"]).all()


def test_rejects_have_source_lines(etl_out: tuple[Path, dict[str, Any]], source: Path) -> None:
    out, manifest = etl_out
    rejects = read_tsv(out / "rejects.tsv")
    assert {r["reason"] for r in rejects} == {
        "wrong column count: fewer than 8 fields", "unparseable num_claims '12a'", "missing patent_id",
        "wrong column count: fewer than 7 fields", "unparseable citation_sequence 'x'"}
    assert manifest["rejects"]["rows"] == len(rejects) == 6
    for r in rejects:
        lines = (source / r["source"]).read_bytes().split(b"\n")
        physical = lines[int(r["line"]) - 1].decode("utf-8", errors="replace")
        if r["key"]:
            assert physical.startswith(f'"{r["key"]}"'), (r, physical)
        else:
            assert physical.startswith('""\t'), (r, physical)


def test_manifest_has_counts_hashes_and_schema(etl_out: tuple[Path, dict[str, Any]], source: Path) -> None:
    _, m = etl_out
    assert m["schema"] == {"name": "schema", "version": 2}
    src = m["sources"]["g_patent"]
    assert src["bytes"] == (source / "g_patent.tsv").stat().st_size
    assert src["hash"] == "blake3:" + blake3.blake3((source / "g_patent.tsv").read_bytes()).hexdigest()
    p = m["counts"]["patents"]
    assert p["rows_read"] == p["rejected"] + p["duplicate_id"] + p["withdrawn_dropped"] + p["written"]
    c = m["counts"]["citations"]
    assert c["rows_read"] == (c["rejected"] + c["self_citation"] + c["dangling_citing"] + c["dangling_cited"]
                              + c["repeated_pair"] + c["written"])
    c = m["counts"]["cpc"]
    assert c["rows_read"] == (c["rejected"] + c["unknown_patent"] + c["malformed_symbol"] + c["repeated_pair"]
                              + c["written"])


def test_malformed_cpc_symbols_are_dropped_and_counted(source: Path, tmp_path: Path) -> None:
    """A cpc_group that is no CPC symbol gets no node, so its rows are dropped (not written as
    CLASSIFIED_AS to a node that does not exist) and counted."""
    src = tmp_path / "src"
    shutil.copytree(source, src)
    path = src / "g_cpc_current.tsv"
    lines = path.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
    pid = lines[1].split("\t")[0]
    # Next to the patent's own rows, so the table stays grouped by patent.
    bad = [f'{pid}\t90\t"F"\t"F24"\t"F24C"\t"{sym}"\t"additional"' for sym in ("F24C", "f24c11/00", "F24C11-00")]
    path.write_text("\n".join(lines[:2] + bad + lines[2:]), encoding="utf-8", errors="surrogateescape")
    m = run_etl(src, tmp_path / "out", EtlOptions())
    assert m["counts"]["cpc"]["malformed_symbol"] == 3
    ends = {row.split(",")[1] for row in (tmp_path / "out" / "classified_as.csv").read_text().splitlines()}
    codes = {row.split(",")[0] for row in (tmp_path / "out" / "cpc_subgroups.csv").read_text().splitlines()}
    assert ends <= codes and not {"F24C", "f24c11/00", "F24C11-00"} & ends


def test_legacy_layout_zip_gives_same_csvs(etl_out: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = etl_out
    src = tmp_path / "legacy"
    synth(src, SynthConfig(patents=3000, seed=SEED, layout="legacy", zip=True))
    assert (src / "g_patent.tsv.zip").exists() and not (src / "g_patent_abstract.tsv.zip").exists()
    with zipfile.ZipFile(src / "g_patent.tsv.zip") as zf:
        assert b"patent_abstract" in zf.open("g_patent.tsv").readline()
    run_etl(src, tmp_path / "out", EtlOptions())
    # patents.csv too: both layouts write the rows of one CPC symbol in g_patent order.
    for f in ("cites.csv", "classified_as.csv", "cpc_subgroups.csv", "patents.csv"):
        assert (tmp_path / "out" / f).read_bytes() == (out / f).read_bytes(), f


def test_first_patent_row_wins_when_id_hashes_collide(etl_out: tuple[Path, dict[str, Any]], source: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """First row per patent id is found on id hashes; ids that share a hash take the exact path."""
    out, manifest = etl_out
    monkeypatch.setattr(convert, "_id_hash", lambda ids: ids.str.len_bytes().cast(pl.UInt64))
    m = run_etl(source, tmp_path / "out", EtlOptions())
    assert m["counts"] == manifest["counts"]
    assert (tmp_path / "out" / "patents.csv").read_bytes() == (out / "patents.csv").read_bytes()


def test_first_abstract_row_of_an_id_wins(etl_out: tuple[Path, dict[str, Any]], source: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated ids in g_patent_abstract, in one batch and across batches: the first row's text is kept."""
    out, manifest = etl_out
    ids = pl.read_csv(out / "patents.csv", has_header=False, new_columns=convert._PATENT_COLUMNS,
                      infer_schema=False)["id"]
    early, late = ids[10], ids[20]
    src = tmp_path / "src"
    shutil.copytree(source, src)
    path = src / "g_patent_abstract.tsv"
    head, body = path.read_bytes().split(b"\n", 1)
    extra = f'"{early}"\t"EARLY FIRST"\n"{early}"\t"EARLY SECOND"\n'.encode()
    path.write_bytes(head + b"\n" + extra + body + f'"{late}"\t"LATE REPEAT"\n'.encode())
    monkeypatch.setattr(convert, "TEXT_BATCH", 50)
    m = run_etl(src, tmp_path / "out", EtlOptions())
    got = pl.read_csv(tmp_path / "out" / "patents.csv", has_header=False, new_columns=convert._PATENT_COLUMNS,
                      infer_schema=False)
    want = pl.read_csv(out / "patents.csv", has_header=False, new_columns=convert._PATENT_COLUMNS,
                       infer_schema=False)
    assert got.filter(pl.col("id") == early)["abstract"].to_list() == ["EARLY FIRST"]
    assert got.filter(pl.col("id") != early).equals(want.filter(pl.col("id") != early))
    assert m["counts"]["abstracts"]["duplicate_id"] == manifest["counts"]["abstracts"]["duplicate_id"] + 3


def test_ungrouped_tables_give_the_same_relationships(etl_out: tuple[Path, dict[str, Any]], source: Path,
                                                    tmp_path: Path) -> None:
    """Rows of one patent scattered through the file: repeated pairs are still collapsed exactly."""
    out, manifest = etl_out
    src = tmp_path / "shuffled"
    shutil.copytree(source, src)
    for name in ("g_us_patent_citation.tsv", "g_cpc_current.tsv"):
        head, *rows = (src / name).read_bytes().split(b"\n")
        rows = [r for r in rows if r]
        random.Random(1).shuffle(rows)
        (src / name).write_bytes(b"\n".join([head, *rows]) + b"\n")
    said: list[str] = []
    m = run_etl(src, tmp_path / "out", EtlOptions(), progress=said.append)
    assert "g_us_patent_citation.tsv is not grouped by patent_id: collapsing repeated pairs through partitions" in said
    for key in ("citations", "cpc"):
        assert m["counts"][key] == manifest["counts"][key], key
    for f in ("cites.csv", "classified_as.csv"):
        assert sorted((tmp_path / "out" / f).read_bytes().splitlines()) == sorted((out / f).read_bytes().splitlines())


def test_small_batches_give_the_same_csvs(etl_out: tuple[Path, dict[str, Any]], source: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A patent's rows split across batch boundaries are still collapsed together."""
    out, manifest = etl_out
    monkeypatch.setattr(relations, "BATCH", 97)
    m = run_etl(source, tmp_path / "out", EtlOptions())
    assert m["counts"] == manifest["counts"]
    for f in ("patents.csv", "cites.csv", "classified_as.csv", "cpc_subgroups.csv", "rejects.tsv"):
        assert (tmp_path / "out" / f).read_bytes() == (out / f).read_bytes(), f


@pytest.mark.parametrize("ids", [["3930271", "D238154", "RE28671"], ["RE28671", "3930271", "D238154", "10000000"]])
def test_sorted_ids_for_the_abstract_lookup(ids: list[str]) -> None:
    series = pl.Series(ids)
    by_id, sorted_ids = convert._sorted_ids(series)
    assert sorted_ids.to_list() == sorted(ids) and series.gather(by_id).to_list() == sorted(ids)


def test_first_of_runs_lowest_sequence_first_on_ties_nulls_last() -> None:
    key = pl.Series(["a", "a", "a", "b", "c", "c", "c", "a"])
    seq = pl.Series([2, 0, 0, None, None, 5, None, 1], dtype=pl.Int64)
    assert relations.first_of_runs(key, seq).tolist() == [1, 3, 5, 7]
    assert relations.first_of_runs(pl.Series([], dtype=pl.String), pl.Series([], dtype=pl.Int64)).tolist() == []


def test_id_index_is_exact_for_every_id_family() -> None:
    ids = pl.Series(["3930271", "D900001", "D0900001", "PP12345", "RE48000", "0123", "H002000", "X-odd"])
    index = IdIndex.build(ids)
    probe = pl.Series(["3930271", "D900001", "D0900001", "PP12345", "RE48000", "0123", "123", "H002000", "H2000",
                       "X-odd", "3930272", "D900002", "+3930271", " 3930271", "", None])
    assert index.contains(probe).to_list() == [True] * 6 + [False, True, False, True] + [False] * 6


def test_keep_withdrawn(source: Path, tmp_path: Path) -> None:
    m = run_etl(source, tmp_path, EtlOptions(keep_withdrawn=True))
    p = m["counts"]["patents"]
    assert p["withdrawn_dropped"] == 0 and p["written"] == p["rows_read"] - p["rejected"] - p["duplicate_id"]


def test_summary_counts_add_up(source: Path, tmp_path: Path) -> None:
    """Each line of the etl summary: read - kept = the dropped counts it lists, none missing."""
    result = CliRunner().invoke(main, ["etl", str(source), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = {line.split(":")[0].strip(): line for line in result.output.splitlines()
             if line.strip().startswith(("patents:", "citations:", "cpc:"))}
    assert set(lines) == {"patents", "citations", "cpc"}
    for name, line in lines.items():
        head, dropped = line.split("(dropped: ", 1)
        read, kept = (int(n.replace(",", "")) for n in re.findall(r"([\d,]+) (?:read|kept)", head))
        numbers = [int(n.replace(",", "")) for n in re.findall(r"(?<![\w/])(\d[\d,]*)", dropped.split(")")[0])]
        assert read - kept == sum(numbers), (name, line)
    assert "from and" in lines["citations"] and "without their bad or partial date" in lines["citations"]


def test_synth_is_deterministic(tmp_path: Path) -> None:
    synth(tmp_path / "a", SynthConfig(patents=500, seed=11))
    synth(tmp_path / "b", SynthConfig(patents=500, seed=11))
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name


def test_synth_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Patents generated a chunk at a time: ids unique, citations only to earlier patents, a patent's rows
    kept together in every table, quirks counted over all chunks."""
    monkeypatch.setattr(synth_module, "_CHUNK", 700)
    summary = synth(tmp_path / "src", SynthConfig(patents=3000, seed=3))
    q = summary["quirks"]
    assert summary["rows"]["g_patent"] == 3000 + q["patent_duplicate_id"] + 3
    patents = read_tsv(tmp_path / "src" / "g_patent.tsv")
    first_rows = {r["patent_id"]: r for r in reversed(patents) if r["patent_id"]}
    assert len(first_rows) == 3000 + 2  # two of the three malformed rows have an id
    dates = {i: r["patent_date"] for i, r in first_rows.items()}
    cites = [r for r in read_tsv(tmp_path / "src" / "g_us_patent_citation.tsv")
             if r["citation_patent_id"] in dates and r["patent_id"] != r["citation_patent_id"]]
    assert cites and all(dates[r["citation_patent_id"]] <= dates[r["patent_id"]] for r in cites)
    said: list[str] = []
    m = run_etl(tmp_path / "src", tmp_path / "out", EtlOptions(), progress=said.append)
    assert not [s for s in said if "not grouped" in s]
    assert m["rejects"]["rows"] == 6
    assert m["counts"]["patents"]["duplicate_id"] == q["patent_duplicate_id"] == 5
    assert m["counts"]["patents"]["withdrawn"] == q["withdrawn"]
    kept_all = run_etl(tmp_path / "src", tmp_path / "all", EtlOptions(keep_withdrawn=True))
    assert kept_all["counts"]["cpc"]["unknown_patent"] == q["cpc_unknown_patent"]  # the ghost rows only
    assert m["counts"]["citations"]["self_citation"] >= q["citation_self"] - q["citation_repeated_pair"]


def test_synth_structure(source: Path) -> None:
    dates = {r["patent_id"]: r["patent_date"] for r in read_tsv(source / "g_patent.tsv")}
    cites = read_tsv(source / "g_us_patent_citation.tsv")
    inside = [r for r in cites if r["patent_id"] in dates and r["citation_patent_id"] in dates
              and r["patent_id"] != r["citation_patent_id"]]
    assert all(dates[r["citation_patent_id"]] <= dates[r["patent_id"]] for r in inside)
    cpc = {}
    for r in read_tsv(source / "g_cpc_current.tsv"):
        if r["cpc_sequence"] == "0":
            cpc[r["patent_id"]] = r["cpc_subclass"]
    same = sum(cpc.get(r["patent_id"]) == cpc.get(r["citation_patent_id"]) for r in inside)
    assert same / len(inside) > 0.6  # citations concentrate in CPC neighbourhoods
    counts: dict[str, int] = {}
    for r in inside:
        counts[r["citation_patent_id"]] = counts.get(r["citation_patent_id"], 0) + 1
    top = sorted(counts.values(), reverse=True)
    assert top[0] > 10 * (sum(top) / len(top))  # heavy-tailed in-degree


# -- bad input: one line, naming the file and what would be valid ----------------------------------
def _err(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and result.stderr.endswith(errors[0] + "\n"), result.stderr
    assert "Traceback" not in result.output
    return errors[0] + "\n"


def test_missing_file(source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(source, src)
    (src / "g_cpc_current.tsv").unlink()
    assert _err(["etl", str(src), str(tmp_path / "o")]) == (
        f"Error: {src}/g_cpc_current.tsv (or g_cpc_current.tsv.zip) is missing; download it from PatentsView's "
        "granted-patent bulk tables.\n")


def test_missing_column_wrong_delimiter_empty(source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(source, src)
    f = src / "g_cpc_current.tsv"
    lines = f.read_text(encoding="utf-8", errors="replace").split("\n")
    f.write_text("\n".join([lines[0].replace('"cpc_type"', '"type"'), *lines[1:]]))
    assert _err(["etl", str(src), str(tmp_path / "o")]).startswith(
        f"Error: {f}: missing column 'cpc_type' (line 1 has: patent_id, cpc_sequence, cpc_section, cpc_class, "
        "cpc_subclass, cpc_group, type); g_cpc_current needs patent_id,")
    f.write_text("\n".join(line.replace("\t", ",") for line in lines))
    assert _err(["etl", str(src), str(tmp_path / "o")]) == (
        f"Error: {f}: line 1 is not tab-separated (found ',' instead); PatentsView tables are .tsv files with a "
        "tab between columns.\n")
    f.write_text("")
    assert _err(["etl", str(src), str(tmp_path / "o")]) == (
        f"Error: {f} is empty; expected a header line of tab-separated column names.\n")


def test_out_dir_with_another_run(etl_out: tuple[Path, dict[str, Any]], source: Path) -> None:
    out, _ = etl_out
    assert _err(["etl", str(source), str(out)]) == (
        f"Error: {out} already holds an ETL run (manifest.json); pass --overwrite to replace it or choose "
        "another OUT_DIR.\n")
    with pytest.raises(OutputExistsError):
        run_etl(source, out, EtlOptions())


def test_reject_rate_exceeded_leaves_no_finished_output(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    msg = _err(["etl", str(source), str(out), "--max-reject-rate", "0.00001"])
    assert msg.startswith("Error: 6 of ") and msg.endswith(
        f"above --max-reject-rate 1e-05; see {out}/rejects.tsv (raise the rate to accept them).\n")
    assert (out / "rejects.tsv").exists()
    assert not (out / "manifest.json").exists() and not (out / "patents.csv").exists()


def test_interrupted_run_starts_clean(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    (out / ".etl-tmp" / "work").mkdir(parents=True)
    (out / ".etl-tmp" / "patents.csv").write_text("half")
    (out / "cites.csv").write_text("half-moved")  # moved before the interruption, manifest never written
    m = run_etl(source, out, EtlOptions())
    assert not (out / ".etl-tmp").exists()
    assert sum(1 for _ in (out / "cites.csv").open()) == m["graph"]["relationships"]["CITES"]


def test_import_refuses_non_empty_database(etl_out: tuple[Path, dict[str, Any]], imported: dict[str, Any],
                                           runtime: Neo4jRuntime | None) -> None:
    out, _ = etl_out
    with pytest.raises(OutputExistsError, match=r"^database 'neo4j' already holds [\d,]+ nodes; pass --overwrite"):
        import_graph(out, ImportOptions(), runtime=runtime)
    result = CliRunner().invoke(main, ["import", str(out / "nope")])
    assert result.output == (f"Error: {out}/nope has no manifest.json; run `patentminer etl SOURCE_DIR "
                             f"{out}/nope` first (an interrupted ETL leaves none).\n")


def test_compose_command_matches_admin_args(etl_out: tuple[Path, dict[str, Any]]) -> None:
    _out, manifest = etl_out
    cmd = compose_command(manifest)
    assert "neo4j-admin database import full neo4j" in cmd
    assert "--nodes=Patent=/import/patents.header.csv,/import/patents.csv" in cmd
    compose = (Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text()
    documented = {tok for line in compose.splitlines() if line.startswith("#     --") for tok in line[1:].split()
                  if tok.startswith("--")}
    assert documented == {tok for tok in cmd.split() if tok.startswith("--") and tok != "--rm"}


def test_unwind_import_gives_the_same_graph(etl_out: tuple[Path, dict[str, Any]], imported: dict[str, Any],
                                            graph: Graph) -> None:
    """The driver path (for servers neo4j-admin cannot reach) builds the same graph."""
    out, manifest = etl_out
    report = import_graph(out, ImportOptions(overwrite=True, method="unwind", batch_size=5000))
    assert report["counts"] == manifest["graph"] and report["method"] == "unwind"
    assert report["replanned"]  # fresh index samples, so the next queries are planned for this graph
    df = pl.read_csv(out / "cites.csv", has_header=False, new_columns=["s", "e", "seq", "category", "date"],
                     schema_overrides={"s": pl.String, "e": pl.String})
    row = df.row(0, named=True)
    got = graph.read("MATCH (:Patent {id: $s})-[r:CITES]->(:Patent {id: $e}) RETURN r.sequence AS seq",
                     {"s": row["s"], "e": row["e"]})
    assert got == [{"seq": row["seq"]}]


def test_import_count_mismatch_fails_loudly(etl_out: tuple[Path, dict[str, Any]], imported: dict[str, Any],
                                            tmp_path: Path) -> None:
    """A graph whose counts differ from manifest.json is an error naming both counts, not a silent success."""
    out, manifest = etl_out
    tampered = tmp_path / "import"
    shutil.copytree(out, tampered)
    manifest["graph"]["nodes"]["Patent"] += 1
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    n = manifest["graph"]["nodes"]["Patent"]
    result = CliRunner().invoke(main, ["import", str(tampered), "--overwrite", "--method", "unwind"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: imported graph does not match manifest.json: node Patent: graph {n - 1:,} vs manifest {n:,}")


def test_zip_archives_that_are_not_one_tsv(source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(source, src)
    (src / "g_cpc_current.tsv").unlink()
    bad = src / "g_cpc_current.tsv.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    msg = _err(["etl", str(src), str(tmp_path / "o")])
    assert msg.startswith(f"Error: {bad}: not a readable zip archive (") and msg.count("\n") == 1
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("g_cpc_current.tsv", (source / "g_cpc_current.tsv").read_bytes())
        zf.writestr("notes.txt", "a second member")
    assert _err(["etl", str(src), str(tmp_path / "o")]) == (
        f"Error: {bad}: expected one .tsv inside the archive, found 2.\n")


def test_malformed_quoting_falls_back_to_the_csv_module(source: Path, tmp_path: Path) -> None:
    """A quote inside an unquoted field stops Polars' reader ("CSV malformed"); the table is then read again
    through Python's csv module, which takes the quote as text, and the run completes."""
    src = tmp_path / "src"
    shutil.copytree(source, src)
    f = src / "g_cpc_current.tsv"
    first = read_tsv(f)[0]
    with f.open("a", encoding="utf-8") as fh:
        fh.write(f'"{first["patent_id"]}"\t9\t"Y"\t"Y10"\t"Y10S"\t"Y10S901/02"\tinven"tional\n')
    m = run_etl(src, tmp_path / "o", EtlOptions())
    rows = pl.read_csv(tmp_path / "o" / "classified_as.csv", has_header=False, infer_schema=False,
                       new_columns=["p", "sym", "rk", "sg", "b", "seq", "type"])
    assert rows.filter((pl.col("p") == first["patent_id"]) & (pl.col("type") == 'inven"tional')).height == 1
    assert m["counts"]["cpc"]["rejected"] == 1  # the synthetic table's own unparseable row, as without the quote


def test_bad_input_from_library_is_typed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a directory"):
        run_etl(tmp_path / "missing", tmp_path / "o", EtlOptions())


@pytest.mark.parametrize("ids", [
    ["3930271", "D900001", "D0900001", "PP12345", "RE48000", "0123", "H002000", "X-odd", "1", "999999999999",
     "12345678901234567890", "T100", "AI1", "7 5", "+12", "-5", "200000000", "199999999"],
    ["3930271", "10000000"],
    [],
])
def test_rank_keys_equal_rank_key(ids: list[str]) -> None:
    """The fast path for plain numeric ids gives exactly the keys of the regular expressions."""
    series = pl.Series(ids, dtype=pl.String)
    expected = pl.select(rank_key(pl.lit(series))).to_series().to_list() if ids else []
    assert rank_keys(series).to_list() == expected
