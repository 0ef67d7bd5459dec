"""Mining against the real graph: every strategy's invariants checked with independent Cypher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from patentminer.cli import main
from patentminer.cypher.connection import Graph
from patentminer.cypher.importer import ImportOptions, apply_schema, import_graph
from patentminer.cypher.mining import MineOptions, RandomCandidates, list_patents, mine, multiplier, read_first_passing
from patentminer.cypher.registry import Registry, read_lock
from patentminer.cypher.runtime import Neo4jRuntime
from patentminer.dataset.reader import MinedDataset
from patentminer.errors import ConfigError, GraphError
from patentminer.etl.convert import EtlOptions, run_etl
from patentminer.etl.synth import SynthConfig, synth

K = 3


def test_empty_graph_and_missing_schema(graph: Graph, tmp_path: Path) -> None:
    """Runs first in this module, on the empty database the module fixture hands out."""
    with pytest.raises(GraphError, match=r"^the graph lacks patentminer's schema \(no patent_id constraint\)"):
        mine(graph, tmp_path / "a", MineOptions())
    apply_schema(graph)
    with pytest.raises(GraphError, match=r"^the graph holds no Patent nodes; run `patentminer etl`"):
        mine(graph, tmp_path / "b", MineOptions())


@pytest.fixture(scope="module")
def loaded(graph: Graph, runtime: Neo4jRuntime | None, tmp_path_factory: pytest.TempPathFactory) -> Graph:
    src = tmp_path_factory.mktemp("src")
    # Seed 14: two CPC classes with two subclasses each, so the class and section levels have negatives.
    synth(src, SynthConfig(patents=4000, seed=14))
    out = tmp_path_factory.mktemp("csv")
    run_etl(src, out, EtlOptions())
    import_graph(out, ImportOptions(overwrite=True, method="unwind"), runtime=runtime)
    return graph


def _mine(graph: Graph, out: Path, **kw: Any) -> dict[str, Any]:
    opts = {"negatives": K, "seed": 1, "batch_size": 100, "workers": 2, "corpus_size": 500, "limit_anchors": 700,
            "eval_queries": 100, "heldout_size": 200, **kw}
    return mine(graph, out, MineOptions(**opts))


def _rows(out: Path) -> pl.DataFrame:
    data = MinedDataset.open(out)
    return pl.concat([data.split_texts(s).with_columns(pl.lit(s).alias("split")) for s in ("train", "dev", "test")])


def _check_common(graph: Graph, rows: pl.DataFrame, guard: str) -> None:
    neg_cols = [f"negative_{i + 1}_id" for i in range(K)]
    assert rows.height > 0
    for r in rows.iter_rows(named=True):
        negs = [r[c] for c in neg_cols]
        assert len(set(negs)) == K, r
        assert r["anchor_id"] not in negs and r["positive_id"] not in negs
    records = [{"a": r["anchor_id"], "p": r["positive_id"], "n": [r[c] for c in neg_cols]}
               for r in rows.iter_rows(named=True)]
    bad = graph.read(
        "UNWIND $rows AS row MATCH (a:Patent {id: row.a}), (p:Patent {id: row.p}) UNWIND row.n AS nid "
        "MATCH (n:Patent {id: nid}) "
        f"WHERE n.date >= a.date OR {guard} RETURN row.a AS a, nid", {"rows": records})
    assert bad == [], bad[:5]
    # Texts follow the ids.
    r0 = rows.row(0, named=True)
    assert r0["anchor"] and r0["negative_1"]
    t = graph.read("MATCH (p:Patent {id: $id}) RETURN p.title AS t", {"id": r0["positive_id"]})[0]["t"]
    assert r0["positive"].startswith(t + " [SEP] ")


HOPS = "EXISTS { (a)-[:CITES*1..2]-(n) }"


def test_citation_cpc(loaded: Graph, tmp_path: Path) -> None:
    info = _mine(loaded, tmp_path)
    rows = _rows(tmp_path)
    _check_common(loaded, rows, HOPS)
    records = [{"a": r["anchor_id"], "p": r["positive_id"], "lvl": r["level"],
                "n": [r[f"negative_{i + 1}_id"] for i in range(K)]} for r in rows.iter_rows(named=True)]
    not_cited = loaded.read("UNWIND $rows AS row MATCH (a:Patent {id: row.a}), (p:Patent {id: row.p}) "
                            "WHERE NOT (a)-[:CITES]->(p) RETURN row.a AS a", {"rows": records})
    assert not_cited == []
    # Every negative sits in the positive's CPC neighbourhood, at most at the row's level.
    far = loaded.read(
        "UNWIND $rows AS row MATCH (p:Patent {id: row.p}) UNWIND row.n AS nid MATCH (n:Patent {id: nid}) "
        "WHERE NOT EXISTS { MATCH (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(sc) "
        "MATCH (n)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(sc) } RETURN nid",
        {"rows": records})
    assert far == []
    sub_rows = [r for r in records if r["lvl"] == "subgroup"]
    assert sub_rows
    off = loaded.read(
        "UNWIND $rows AS row MATCH (p:Patent {id: row.p}) UNWIND row.n AS nid MATCH (n:Patent {id: nid}) "
        "WHERE NOT EXISTS { (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)<-[:CLASSIFIED_AS]-(n) } RETURN nid",
        {"rows": sub_rows})
    assert off == []
    # Split without leakage.
    test = rows.filter(pl.col("split") == "test")
    train = rows.filter(pl.col("split") != "test")
    assert set(test["anchor_id"]).isdisjoint(set(train["anchor_id"]))
    dates = {r["id"]: r["d"] for r in loaded.read(
        "UNWIND $ids AS id MATCH (p:Patent {id: id}) RETURN p.id AS id, toString(p.date) AS d",
        {"ids": rows["anchor_id"].to_list()})}
    assert all(dates[a] >= info["test_from"] for a in test["anchor_id"])
    assert all(dates[a] < info["test_from"] for a in train["anchor_id"])
    assert info["rows"]["dev"] > 0 and info["query"] == {
        "name": "citation-cpc", "version": 5, "ref": "citation-cpc@v5",
        "sha256": Registry.load().get("citation-cpc@v5").sha256}
    assert sum(info["anchors"]["skipped"].values()) + info["anchors"]["mined"] == info["anchors"]["eligible"]
    # Columns and the retrieval benchmark.
    assert pl.read_parquet(tmp_path / "train.parquet").columns[:5] == [
        "anchor_id", "positive_id", "negative_1_id", "negative_2_id", "negative_3_id"]
    queries = pl.read_parquet(tmp_path / "eval" / "queries.parquet")
    corpus = pl.read_parquet(tmp_path / "eval" / "corpus.parquet")
    qrels = pl.read_parquet(tmp_path / "eval" / "qrels.parquet")
    # The benchmark's queries are the eligible test anchors (all of them here: fewer than --eval-queries), mined
    # or not, so that every strategy shares it.
    assert set(test["anchor_id"]) <= set(queries["query_id"])
    assert set(qrels["corpus_id"]) <= set(corpus["corpus_id"])
    assert set(qrels["query_id"]) == set(queries["query_id"])
    assert json.loads((tmp_path / "dataset.json").read_text())["rows"] == info["rows"]


def test_citation_cpc_v2_v3_and_v4_give_the_rows_of_v1(loaded: Graph, tmp_path: Path) -> None:
    """v2, v3 and v4 are faster queries for the same sample: datasets of v1 to v4 must not differ (v4 breaks
    ties of rk by element id instead of id; the test graph's ids, like PatentsView's, have no such ties).
    v5 draws another sample (a bucket at a time); test_citation_cpc checks its rows."""
    _assert_same_datasets(loaded, tmp_path, "citation-cpc", ("v1", "v2", "v3", "v4"), limit_anchors=300)


@pytest.mark.parametrize(("strategy", "level", "versions"), [
    ("citation-of-citation", "subgroup", ("v1", "v2")), ("random", "subgroup", ("v1", "v2")),
    ("cpc-siblings", "subgroup", ("v1", "v2", "v3")),
    *[("cpc-distance", level, ("v1", "v2", "v3", "v4")) for level in ("subgroup", "subclass")],
    # v1 sorts a whole branch per anchor (a class or section: minutes on the test graph). v2 is checked against
    # v1 at two levels, which share its code path, and the later versions against v2 at the others.
    *[("cpc-distance", level, ("v2", "v3", "v4")) for level in ("group", "class", "section", "random")]])
def test_new_versions_give_the_rows_of_the_first(loaded: Graph, tmp_path: Path, strategy: str, level: str,
                                          versions: tuple[str, ...]) -> None:
    """Later versions change how the sample is found (lazy guard, one sorted list per CPC branch and
    batch, the finer-branch test), not which: their datasets must equal the first listed one's, level by level."""
    _assert_same_datasets(loaded, tmp_path, strategy, versions, level=level, limit_anchors=300)


def _assert_same_datasets(graph: Graph, tmp_path: Path, strategy: str, versions: tuple[str, ...],
                          **kw: Any) -> None:
    for v in versions:
        _mine(graph, tmp_path / v, strategy=f"{strategy}@{v}", **{"batch_size": 25, "workers": 1, **kw})
    for f in ("train.parquet", "dev.parquet", "test.parquet"):
        first = pl.read_parquet(tmp_path / versions[0] / f)
        assert first.height > 0, f
        for v in versions[1:]:
            assert first.equals(pl.read_parquet(tmp_path / v / f)), (v, f)


def test_citation_of_citation(loaded: Graph, tmp_path: Path) -> None:
    _mine(loaded, tmp_path, strategy="citation-of-citation")
    rows = _rows(tmp_path)
    guard = ("EXISTS { (a)-[:CITES]-(n) } OR EXISTS { (a)-[:CITES]-(m:Patent)-[:CITES]-(n) WHERE m <> p } "
             "OR NOT (p)-[:CITES]->(n)")
    _check_common(loaded, rows, guard)


@pytest.mark.parametrize("level", ["group", "subclass", "random"])
def test_cpc_distance(loaded: Graph, tmp_path: Path, level: str) -> None:
    _mine(loaded, tmp_path, strategy="cpc-distance", level=level, limit_anchors=300)
    rows = _rows(tmp_path)
    _check_common(loaded, rows, HOPS)
    assert set(rows["level"]) == {level}
    if level == "random":
        return
    top, finer = {"group": ("CPCGroup", "CPCSubgroup"), "subclass": ("CPCSubclass", "CPCGroup")}[level]
    records = [{"p": r["positive_id"], "n": [r[f"negative_{i + 1}_id"] for i in range(K)]}
               for r in rows.iter_rows(named=True)]
    # Independent check: the first symbol's ancestors, then membership by code.
    wrong = loaded.read(
        "UNWIND $rows AS row MATCH (p:Patent {id: row.p})-[r:CLASSIFIED_AS]->(s0:CPCSubgroup) "
        "WITH row, s0 ORDER BY r.sequence WITH row, collect(s0)[0] AS s0 "
        "MATCH (s0)-[:PART_OF*0..2]->(t) WHERE $top IN labels(t) "
        "MATCH (s0)-[:PART_OF*0..2]->(f) WHERE $finer IN labels(f) "
        "UNWIND row.n AS nid MATCH (n:Patent {id: nid}) "
        "WHERE NOT EXISTS { (n)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF*0..2]->(t) } "
        "OR EXISTS { (n)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF*0..2]->(f) } RETURN nid",
        {"rows": records, "top": top, "finer": finer})
    assert wrong == []


def test_random(loaded: Graph, tmp_path: Path) -> None:
    _mine(loaded, tmp_path, strategy="random")
    _check_common(loaded, _rows(tmp_path), HOPS)


@pytest.mark.parametrize("version", ["random@v1", "random@v2"])
def test_random_reads_a_prefix_first_and_gives_the_rows_of_whole_lists(loaded: Graph, version: str) -> None:
    """Candidates cut to their first k + 5, the short anchors asked again: the rows of one whole-list read."""
    registry = Registry.load()
    table = list_patents(loaded, registry.checked("anchors"))
    body = registry.checked(version).body
    params = {"pos_mul": multiplier(1, "positive")}
    anchors = table.filter(pl.col("cites")).sort("date").tail(400)  # late anchors: long candidate lists
    for k in (3, 12):  # at 12 some anchors fall short in their first 17 candidates and are asked again
        sampler = RandomCandidates(table, 1, k)
        rows = [{"id": a, "cands": sampler.sample(a, d)} for a, d in anchors.select("id", "date").iter_rows()]
        whole = loaded.read(body, {**params, "k": k, "rows": rows})
        assert read_first_passing(loaded, body, {**params, "k": k}, rows, k) == whole
        head = loaded.read(body, {**params, "k": k, "rows": [{**r, "cands": r["cands"][:k + 5]} for r in rows]})
        if k == 12:
            assert head != whole  # the second read was needed and used


def test_cpc_siblings(loaded: Graph, tmp_path: Path) -> None:
    _mine(loaded, tmp_path, strategy="cpc-siblings")
    rows = _rows(tmp_path)
    _check_common(loaded, rows, HOPS)
    records = [{"a": r["anchor_id"], "p": r["positive_id"], "n": [r[f"negative_{i + 1}_id"] for i in range(K)]}
               for r in rows.iter_rows(named=True)]
    no_share = loaded.read(
        "UNWIND $rows AS row MATCH (a:Patent {id: row.a}), (p:Patent {id: row.p}) "
        "WHERE NOT EXISTS { MATCH (a)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(g:CPCGroup) "
        "MATCH (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(g) } RETURN row.a AS a", {"rows": records})
    assert no_share == []


def test_deterministic(loaded: Graph, tmp_path: Path) -> None:
    for strategy in ("citation-cpc", "random"):
        _mine(loaded, tmp_path / strategy / "a", strategy=strategy, workers=2)
        _mine(loaded, tmp_path / strategy / "b", strategy=strategy, workers=1, batch_size=100)
        for f in ("train.parquet", "dev.parquet", "test.parquet", "eval/corpus.parquet", "eval/qrels.parquet"):
            assert (tmp_path / strategy / "a" / f).read_bytes() == (tmp_path / strategy / "b" / f).read_bytes()
    _mine(loaded, tmp_path / "seed2", seed=2)
    assert (tmp_path / "seed2" / "train.parquet").read_bytes() != (
        tmp_path / "citation-cpc" / "a" / "train.parquet").read_bytes()


def test_resume_after_interrupt(loaded: Graph, tmp_path: Path) -> None:
    _mine(loaded, tmp_path / "whole")
    calls = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    opts = MineOptions(negatives=K, seed=1, batch_size=100, workers=1, corpus_size=500, limit_anchors=700,
                       eval_queries=100, heldout_size=200)
    with pytest.raises(KeyboardInterrupt):
        mine(loaded, tmp_path / "cut", opts, progress=interrupt)
    assert not (tmp_path / "cut" / "dataset.json").exists() and not (tmp_path / "cut" / "train.parquet").exists()
    assert len(list((tmp_path / "cut" / "parts").glob("*.parquet"))) >= 2
    with pytest.raises(Exception, match="unfinished run with other settings"):
        mine(loaded, tmp_path / "cut", MineOptions(negatives=2, seed=1, batch_size=100, limit_anchors=700,
                                                   eval_queries=100, heldout_size=200))
    found = len(list((tmp_path / "cut" / "parts").glob("*.parquet")))
    info = mine(loaded, tmp_path / "cut", opts)
    assert info["resumed"] == {"batches_found": found, "anchors_mined_now": 700 - 100 * found}
    assert info["anchors_per_s"] > 0  # over the anchors this run mined, not the ones it found
    for f in ("train.parquet", "dev.parquet", "test.parquet", "eval/qrels.parquet"):
        assert (tmp_path / "cut" / f).read_bytes() == (tmp_path / "whole" / f).read_bytes()


def test_resume_discards_parts_of_another_graph(loaded: Graph, tmp_path: Path) -> None:
    """Parts written for other anchors (the graph was re-imported in between) are not mixed in."""
    _mine(loaded, tmp_path / "whole", limit_anchors=300)
    opts = MineOptions(negatives=K, seed=1, batch_size=100, workers=1, corpus_size=500, limit_anchors=300,
                       eval_queries=100, heldout_size=200)

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mine(loaded, tmp_path / "cut", opts, progress=interrupt)
    parts = tmp_path / "cut" / "parts"
    first = parts / "part-000000.parquet"
    pl.read_parquet(first).with_columns(pl.lit("X1").alias("positive_id")).write_parquet(first)
    (parts / "plan.sha256").write_text("0" * 64)
    mine(loaded, tmp_path / "cut", opts)
    for f in ("train.parquet", "dev.parquet", "test.parquet"):
        assert (tmp_path / "cut" / f).read_bytes() == (tmp_path / "whole" / f).read_bytes()


def test_texts_stored_once_in_batches(loaded: Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each patent's text is stored once, in record batches whose size the file records: same texts with
    batches of 37 rows as with one batch."""
    import pyarrow as pa

    import patentminer.dataset.assemble as assemble

    monkeypatch.setattr(assemble, "SCAN_SHARE", 1.0)  # fetched by id, in chunks
    _mine(loaded, tmp_path / "one", limit_anchors=300)
    monkeypatch.setattr(assemble, "TEXT_BATCH", 37)
    _mine(loaded, tmp_path / "many", limit_anchors=300)
    monkeypatch.setattr(assemble, "SCAN_SHARE", 0.0)  # one scan of every patent, in store order
    _mine(loaded, tmp_path / "scan", limit_anchors=300)
    reader = pa.ipc.open_file(str(tmp_path / "many" / "texts.arrow"))
    assert reader.num_record_batches > 3 and reader.schema.metadata[b"rows_per_batch"] == b"37"
    for split in ("train", "dev", "test"):
        one = MinedDataset.open(tmp_path / "one").split_texts(split)
        assert one.height > 0
        for other in ("many", "scan"):
            assert one.equals(MinedDataset.open(tmp_path / other).split_texts(split)), (split, other)
    rows = _rows(tmp_path / "one")
    named = set(pl.concat([rows[c] for c in rows.columns if c.endswith("_id")]).to_list())
    for way in ("one", "scan"):
        store = MinedDataset.open(tmp_path / way).texts()
        assert store.ids.n_unique() == len(store) and set(store.ids.to_list()) == named, way
    info = json.loads((tmp_path / "scan" / "dataset.json").read_text())
    assert info["queries"]["texts"]["ref"] == "all-texts@v1"
    assert not list((tmp_path / "many").rglob("*.tmp"))


def test_benchmark_bounded_seeded_and_held_out(loaded: Graph, tmp_path: Path) -> None:
    """The benchmark has at most --eval-queries queries and --corpus-size patents (more only when the
    queries' relevant patents alone exceed it), is the same for the same seed, and kNN accuracy is
    measured on patents granted on or after the test date, which no train or dev row names."""
    info = _mine(loaded, tmp_path / "a", limit_anchors=None, eval_queries=40, corpus_size=2000, heldout_size=60)
    _mine(loaded, tmp_path / "b", limit_anchors=None, eval_queries=40, corpus_size=2000, heldout_size=60)
    _mine(loaded, tmp_path / "c", limit_anchors=None, eval_queries=40, corpus_size=2000, heldout_size=60, seed=2)
    ev = info["eval"]
    assert ev["kind"] == "citation" and ev["test_anchors"] > 40
    assert ev["queries"] == 40 and ev["corpus"] == 2000 and ev["heldout"] == 60
    assert ev["relevant"] + ev["distractors"] == 2000 and ev["distractors"] > 0
    for f in ("queries", "corpus", "qrels", "heldout"):
        assert (tmp_path / "a" / "eval" / f"{f}.parquet").read_bytes() == (
            tmp_path / "b" / "eval" / f"{f}.parquet").read_bytes(), f
    queries = {s: set(pl.read_parquet(tmp_path / s / "eval" / "queries.parquet")["query_id"]) for s in "ac"}
    assert queries["a"] != queries["c"]
    asked = loaded.read("UNWIND $ids AS id MATCH (p:Patent {id: id}) RETURN min(toString(p.date)) AS d",
                        {"ids": list(queries["a"])})
    assert asked[0]["d"] >= info["test_from"]
    other = _mine(loaded, tmp_path / "e", limit_anchors=None, eval_queries=40, corpus_size=2000, heldout_size=60,
                  strategy="random")
    for f in ("queries", "corpus", "qrels", "heldout"):  # another strategy, the same benchmark
        assert (tmp_path / "a" / "eval" / f"{f}.parquet").read_bytes() == (
            tmp_path / "e" / "eval" / f"{f}.parquet").read_bytes(), f
    assert other["eval"] == info["eval"]
    bench = MinedDataset.open(tmp_path / "a").benchmark()
    assert set(bench.relevant) == queries["a"]
    assert set().union(*bench.relevant.values()) <= set(bench.corpus["corpus_id"])
    seen = pl.concat([pl.read_parquet(tmp_path / "a" / f"{s}.parquet").select(pl.exclude("level")).unpivot()["value"]
                      for s in ("train", "dev")])
    held = bench.heldout["id"].to_list()
    assert held and set(held).isdisjoint(set(seen.to_list()))
    dates = loaded.read("UNWIND $ids AS id MATCH (p:Patent {id: id}) RETURN min(toString(p.date)) AS d", {"ids": held})
    assert dates[0]["d"] >= info["test_from"]
    assert bench.heldout["cpc"].null_count() == 0
    small = _mine(loaded, tmp_path / "d", limit_anchors=None, eval_queries=40, corpus_size=10, heldout_size=60)
    assert small["eval"]["distractors"] == 0 and small["eval"]["corpus"] == small["eval"]["relevant"] > 10


def test_errors(loaded: Graph, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^unknown strategy 'nope'; use one of citation-cpc, "):
        mine(loaded, tmp_path / "x", MineOptions(strategy="nope"))
    with pytest.raises(ConfigError, match=r"^unknown version 'random@v9'; random has random@v1, random@v2\.$"):
        mine(loaded, tmp_path / "x", MineOptions(strategy="random@v9"))
    with pytest.raises(GraphError, match=r"^no anchor has 5000 negatives with this strategy; lower --negatives"):
        _mine(loaded, tmp_path / "y", negatives=5000, limit_anchors=20)
    loaded.write("MATCH ()-[r:CLASSIFIED_AS]->() WITH r LIMIT 1 REMOVE r.rk")  # as an import of format 1 has them
    try:
        with pytest.raises(GraphError, match=r"^the graph was imported from an older ETL output \(no rk on Patent "
                                             r"nodes, no rk, sg and b on CLASSIFIED_AS relationships"):
            _mine(loaded, tmp_path / "old", limit_anchors=20)
    finally:
        loaded.write("MATCH (p:Patent)-[r:CLASSIFIED_AS]->() WHERE r.rk IS NULL SET r.rk = p.rk")
    result = CliRunner().invoke(main, ["mine", "--out", str(tmp_path / "z"), "--level", "far"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: --level 'far' is not valid; use one of subgroup, group, subclass, class, section, random.")


def test_mine_cli_summary(loaded: Graph, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["mine", "--out", str(tmp_path), "--limit-anchors", "200", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["anchors"]["eligible"] == 200 and info["query"]["ref"] == "citation-cpc@v5"
    assert "batch" in result.stderr  # the progress bar stays on stderr with --json


# -- the registry ---------------------------------------------------------------------------------
def test_released_queries_unchanged_and_all_released() -> None:
    reg = Registry.load()
    lock = read_lock()
    assert reg.verify_lock(lock) == []
    assert {q.ref for q in reg.queries} == set(lock), "a query version is not in queries.lock.json"


def test_header_params_match_body() -> None:
    for q in Registry.load().queries:
        declared = {p.name for p in q.params}
        assert declared == q.body_params(), q.ref


def test_edited_release_is_detected(tmp_path: Path) -> None:
    src = Registry.load().get("random@v1").path
    d = tmp_path / "random"
    d.mkdir()
    (d / "v1.cypher").write_text(src.read_text().replace("LIMIT $k", "LIMIT 5"))
    problems = Registry.load(tmp_path).verify_lock(read_lock())
    assert any(p.startswith("random@v1 was edited after release") for p in problems)


def test_edited_release_is_refused_at_run_time(loaded: Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As neo4j-migrations validates checksums before migrating, mine checks the lock before it runs a query."""
    import shutil

    import patentminer.cypher.registry as registry

    queries = tmp_path / "queries"
    shutil.copytree(registry.queries_dir(), queries)
    edited = queries / "citation-cpc" / "v3.cypher"
    edited.write_text(edited.read_text().replace("LIMIT $k", "LIMIT 5", 1))
    monkeypatch.setattr(registry, "queries_dir", lambda: queries)
    digest = Registry.load().get("citation-cpc@v3").sha256
    with pytest.raises(ConfigError) as e:
        _mine(loaded, tmp_path / "x", strategy="citation-cpc@v3")
    assert str(e.value) == (f"{edited}: citation-cpc@v3 was edited after its release (sha256 {digest[:12]}, released "
                            f"as {read_lock()['citation-cpc@v3'][:12]}); restore the file and put the change in "
                            "v4.cypher.")
    assert not (tmp_path / "x" / "dataset.json").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("// name: random\n// version: 7\n// params: none\n// returns: x\nRETURN 1\n",
     "header has no '// description:' line; every query file starts with name, version, description, params and "
     "returns."),
    ("// name: other\n// version: 7\n// description: d\n// params: none\n// returns: x\nRETURN 1\n",
     "header says other@v7; the file must be other/v7.cypher."),
])
def test_broken_query_headers(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "random").mkdir()
    path = tmp_path / "random" / "v7.cypher"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        Registry.load(tmp_path)
    assert str(e.value) == f"{path}: {message}"


def test_explain_every_query(graph: Graph) -> None:
    for q in Registry.load().queries:
        for statement in q.statements():
            if q.name == "schema":
                continue  # schema commands cannot be EXPLAINed; applied by every import test
            example = {"List": [], "Boolean": False, "String": "group", "Integer": 3}
            params: dict[str, Any] = {p.name: example[p.type.split("[")[0]] for p in q.params}
            graph.read("EXPLAIN " + statement, params)


def test_cli_list_and_show() -> None:
    out = CliRunner().invoke(main, ["cypher", "list"]).output
    assert "citation-cpc@v1" in out and "released" in out
    shown = CliRunner().invoke(main, ["cypher", "show", "citation-cpc@v1"]).output
    assert shown.startswith("// name: citation-cpc\n// version: 1\n")


@pytest.mark.parametrize("strategy", ["citation-cpc", "cpc-siblings", "cpc-distance", "random"])
def test_batches_in_store_order_give_the_rows_of_id_order(loaded: Graph, tmp_path: Path, strategy: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Anchors are batched in store (CPC) order for speed, and for cpc-distance above the subgroup level by
    their positive's CPC symbol: an anchor's row does not depend on its batch."""
    import patentminer.cypher.mining as mining

    kw: dict[str, Any] = {"limit_anchors": 300, "strategy": strategy,
                          "level": "subclass" if strategy == "cpc-distance" else "subgroup"}
    _mine(loaded, tmp_path / "store", **kw)
    nodes = mining.list_patents(loaded, Registry.load().get("anchors"))
    ordered = mining.store_order(nodes)["id"].to_list()
    assert ordered != sorted(ordered)  # the test graph's store order is not id order
    monkeypatch.setattr(mining, "store_order", lambda anchors: anchors.sort("id"))
    monkeypatch.setattr(mining, "positive_order", lambda graph, ids, pos_mul, workers: ids)
    _mine(loaded, tmp_path / "ids", **kw)
    for f in ("train.parquet", "dev.parquet", "test.parquet"):
        assert (tmp_path / "store" / f).read_bytes() == (tmp_path / "ids" / f).read_bytes(), f
