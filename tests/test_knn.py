"""`patentminer embed` and the knn strategy against the real graph: every veto rule checked with
independent Cypher, the margin with independent arithmetic, determinism, resume, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from patentminer.cli import main
from patentminer.cypher.connection import Graph
from patentminer.cypher.importer import ImportOptions, import_graph
from patentminer.cypher.mining import MineOptions, mine
from patentminer.cypher.runtime import Neo4jRuntime
from patentminer.dataset.reader import MinedDataset
from patentminer.errors import ConfigError
from patentminer.etl.convert import EtlOptions, run_etl
from patentminer.etl.synth import SynthConfig, synth
from patentminer.training.embed import Embeddings, EmbedOptions, embed
from patentminer.training.tiny import build_tiny_encoder

K = 3
MODEL = "packaged:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def world(graph: Graph, runtime: Neo4jRuntime | None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("src")
    synth(src, SynthConfig(patents=2500, seed=13))
    csv = tmp_path_factory.mktemp("csv")
    run_etl(src, csv, EtlOptions())
    import_graph(csv, ImportOptions(overwrite=True, method="unwind"), runtime=runtime)
    base = tmp_path_factory.mktemp("knn")
    texts = [t for _, t in graph.read_table("MATCH (p:Patent) RETURN p.id AS id, p.title + ' ' + p.abstract AS t",
                                           {"id": pl.String, "t": pl.String}).iter_rows()]
    # Mining needs a model whose neighbours mean something (an untrained one finds every patent alike, so the
    # margin leaves nothing); the resume test only needs a fast one.
    emb = base / "emb"
    embed(graph, emb, EmbedOptions(model=MODEL, batch_size=128, max_seq_length=32))
    tiny = build_tiny_encoder(texts, base / "tiny", hidden=32, layers=1)
    return {"emb": emb, "tiny": tiny}


def _mine(graph: Graph, world: dict[str, Path], out: Path, **kw: Any) -> dict[str, Any]:
    opts = {"strategy": "knn", "embeddings": str(world["emb"]), "negatives": K, "seed": 1, "batch_size": 150,
            "workers": 2, "neighbours": 40, "eval_queries": 50, "corpus_size": 300, "heldout_size": 100, **kw}
    return mine(graph, out, MineOptions(**opts))


def _records(out: Path) -> list[dict[str, Any]]:
    data = MinedDataset.open(out)
    rows = pl.concat([data.split(s) for s in ("train", "dev", "test")])
    return [{"a": r["anchor_id"], "p": r["positive_id"], "n": [r[f"negative_{i + 1}_id"] for i in range(K)]}
            for r in rows.iter_rows(named=True)]


def test_embeddings_store(graph: Graph, world: dict[str, Path]) -> None:
    store = Embeddings.open(world["emb"])
    info = json.loads((world["emb"] / "embed.json").read_text())
    assert info["patents"] == len(store.ids) == graph.count("MATCH (p:Patent) WHERE p.date IS NOT NULL "
                                                            "RETURN count(p) AS c")
    assert store.vectors.dtype == np.float16 and store.vectors.shape == (info["patents"], 384)
    norms = np.linalg.norm(store.vectors.astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)
    assert (np.diff(store.days) >= 0).all()  # grant-date order: "earlier" is a prefix
    assert len(info["model_sha256"]) == 64 and info["template"] == "{title} [SEP] {abstract}"


def test_every_veto_rule_holds(graph: Graph, world: dict[str, Path], tmp_path: Path) -> None:
    info = _mine(graph, world, tmp_path)
    records = _records(tmp_path)
    assert len(records) > 100 and {r for rec in records for r in rec["n"]}
    # Independent Cypher, one rule at a time.
    rules = {
        "the positive": "n = p",
        "cited by or citing the anchor": "EXISTS { (a)-[:CITES]-(n) }",
        "within two citation hops": "EXISTS { (a)-[:CITES*1..2]-(n) }",
        "not granted before the anchor": "NOT n.date < a.date",
        "the positive is not cited by the anchor": "NOT (a)-[:CITES]->(p)",
    }
    for name, condition in rules.items():
        bad = graph.read("UNWIND $rows AS row MATCH (a:Patent {id: row.a}), (p:Patent {id: row.p}) "
                         "UNWIND row.n AS nid MATCH (n:Patent {id: nid}) "
                         f"WHERE {condition} RETURN row.a AS a, nid LIMIT 5", {"rows": records})
        assert bad == [], (name, bad)
    k = info["knn"]
    assert k["veto"] == "graph" and k["neighbours"] == 40 and k["margin"] == 0.95
    assert set(k["flagged"]) == {"positive", "cites", "two_hops", "not_earlier"}
    assert k["flagged"]["two_hops"] > 0 and k["flagged"]["not_earlier"] == 0  # the search only offers earlier ones
    assert info["queries"]["strategy"]["ref"] == "knn@v1"


def test_margin_and_hardest_first(graph: Graph, world: dict[str, Path], tmp_path: Path) -> None:
    _mine(graph, world, tmp_path, margin=0.9)
    store = Embeddings.open(world["emb"])
    vec = store.vectors.astype(np.float32)
    records = _records(tmp_path)
    rows = {i: r for r, i in enumerate(store.ids.to_list())}
    for rec in records:
        a, p = vec[rows[rec["a"]]], vec[rows[rec["p"]]]
        sims = [float(a @ vec[rows[n]]) for n in rec["n"]]
        assert max(sims) <= 0.9 * float(a @ p) + 1e-6, rec
        assert sims == sorted(sims, reverse=True), rec  # the most similar survivors, hardest first


def test_veto_none_keeps_what_the_graph_would_veto(graph: Graph, world: dict[str, Path], tmp_path: Path) -> None:
    info = _mine(graph, world, tmp_path, veto="none")
    records = _records(tmp_path)
    assert all(rec["p"] not in rec["n"] for rec in records)
    vetoable = graph.read("UNWIND $rows AS row MATCH (a:Patent {id: row.a}) UNWIND row.n AS nid "
                          "MATCH (n:Patent {id: nid}) WHERE EXISTS { (a)-[:CITES*1..2]-(n) } RETURN count(*) AS c",
                          {"rows": records})[0]["c"]
    assert vetoable > 0 and info["knn"]["veto"] == "none"


def test_deterministic_and_resumable(graph: Graph, world: dict[str, Path], tmp_path: Path) -> None:
    _mine(graph, world, tmp_path / "a", workers=2)
    _mine(graph, world, tmp_path / "b", workers=1)
    calls = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    opts = MineOptions(strategy="knn", embeddings=str(world["emb"]), negatives=K, seed=1, batch_size=150, workers=1,
                       neighbours=40, eval_queries=50, corpus_size=300, heldout_size=100)
    with pytest.raises(KeyboardInterrupt):
        mine(graph, tmp_path / "c", opts, progress=interrupt)
    assert not (tmp_path / "c" / "dataset.json").exists()
    mine(graph, tmp_path / "c", opts)
    for f in ("train.parquet", "dev.parquet", "test.parquet", "texts.arrow", "eval/qrels.parquet"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() == (
            tmp_path / "c" / f).read_bytes(), f


def test_embed_resumes_after_interrupt(graph: Graph, world: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import patentminer.training.embed as embed_module

    monkeypatch.setattr(embed_module, "CHUNK", 700)
    options = EmbedOptions(model=str(world["tiny"]), batch_size=128)
    embed(graph, tmp_path / "whole", options)

    def interrupt(done: int, total: int) -> None:
        if done >= 1400:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed(graph, tmp_path / "e", options, progress=interrupt)
    assert not (tmp_path / "e" / "embed.json").exists() and (tmp_path / "e" / "embeddings.npy.partial").exists()
    said: list[str] = []
    embed(graph, tmp_path / "e", options, echo=said.append)
    assert any(m.startswith("resuming at patent 1,400 of ") for m in said)
    assert np.array_equal(np.load(tmp_path / "e" / "embeddings.npy"), np.load(tmp_path / "whole" / "embeddings.npy"))


def _error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    return result.stderr.strip().splitlines()[-1]


def test_one_line_errors(graph: Graph, world: dict[str, Path], tmp_path: Path) -> None:
    out = str(tmp_path / "x")
    assert _error(["mine", "--strategy", "knn", "--out", out]) == (
        "Error: the knn strategy needs --embeddings DIR (made by `patentminer embed --model MODEL --out DIR`).")
    for margin in ("1.5", "0"):
        assert _error(["mine", "--strategy", "knn", "--embeddings", str(world["emb"]), "--out", out, "--margin",
                       margin]) == (f"Error: --margin {float(margin)}: use a fraction in (0, 1]; a candidate more "
                                    "similar to the anchor than margin x the positive is dropped (0.95 drops "
                                    "near-duplicates of it).")
    missing = tmp_path / "none"
    assert _error(["mine", "--strategy", "knn", "--embeddings", str(missing), "--out", out]) == (
        f"Error: --embeddings {missing} holds no embed.json; make one with `patentminer embed --model MODEL --out "
        f"{missing}`.")
    assert _error(["mine", "--strategy", "knn", "--embeddings", str(world["emb"]), "--out", out,
                   "--embedding-model", "models/other"]) == (
        f"Error: --embeddings {world['emb']} were made with {MODEL!r}, not 'models/other'; run `patentminer embed "
        "--model models/other --out DIR` and point --embeddings at it.")
    other = tmp_path / "other"
    shutil.copytree(world["emb"], other)
    meta = json.loads((other / "embed.json").read_text())
    meta["fingerprint"]["patents_sha256"] = "0" * 64
    (other / "embed.json").write_text(json.dumps(meta))
    n = len(Embeddings.open(other).ids)
    assert _error(["mine", "--strategy", "knn", "--embeddings", str(other), "--out", out]) == (
        f"Error: --embeddings {other} cover another patent set ({n:,} patents; the graph has {n:,}): the graph was "
        f"imported again since; run `patentminer embed --model {MODEL} --out {other} --overwrite`.")
    assert _error(["mine", "--strategy", "random", "--embeddings", str(world["emb"]), "--out", out]) == (
        "Error: --embeddings applies to the knn strategy only.")
    with pytest.raises(ConfigError, match=r"^--neighbours 2: give at least --negatives \(3\)\.$"):
        MineOptions(strategy="knn", embeddings="x", neighbours=2).validate()
