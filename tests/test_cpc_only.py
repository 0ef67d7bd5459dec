"""A dump without citations (CPC only) mines, evaluates and trains, and no metric is reported for a
benchmark that does not exist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from patentminer.cli import main
from patentminer.cypher.connection import Graph
from patentminer.cypher.importer import ImportOptions, import_graph
from patentminer.cypher.mining import MineOptions, mine
from patentminer.cypher.runtime import Neo4jRuntime
from patentminer.dataset.reader import MinedDataset
from patentminer.etl.convert import EtlOptions, run_etl
from patentminer.etl.synth import SynthConfig, synth
from patentminer.training.tiny import build_tiny_encoder


@pytest.fixture(scope="module")
def cpc_only(graph: Graph, runtime: Neo4jRuntime | None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    synth(src, SynthConfig(patents=2000, seed=5))
    cites = src / "g_us_patent_citation.tsv"
    cites.write_text(cites.read_text().splitlines()[0] + "\n")  # the header alone: a dump without citations
    csv = tmp_path_factory.mktemp("csv")
    run_etl(src, csv, EtlOptions())
    import_graph(csv, ImportOptions(overwrite=True, method="unwind"), runtime=runtime)
    out = tmp_path_factory.mktemp("mined")
    with Graph(graph.settings) as g:
        assert g.read("MATCH ()-[r:CITES]->() RETURN count(r) AS n")[0]["n"] == 0
        mine(g, out, MineOptions(strategy="cpc-siblings", negatives=2, seed=1, eval_queries=100, heldout_size=400,
                                limit_anchors=300))
    return out


@pytest.fixture(scope="module")
def tiny(cpc_only: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = MinedDataset.open(cpc_only).texts()
    return build_tiny_encoder(store.get(range(len(store))), tmp_path_factory.mktemp("tiny") / "model",
                              hidden=32, layers=1)


def test_cpc_benchmark_stands_in_for_qrels(cpc_only: Path) -> None:
    """Query: a held-out patent; relevant: the other held-out patents sharing its first subgroup."""
    info = json.loads((cpc_only / "dataset.json").read_text())
    assert info["eval"]["kind"] == "cpc" and 0 < info["eval"]["queries"] <= 100
    bench = MinedDataset.open(cpc_only).benchmark()
    corpus = bench.corpus
    first = dict(zip(corpus["corpus_id"], corpus["cpc"], strict=True))
    assert bench.relevant and all(q not in docs for q, docs in bench.relevant.items())
    for q, docs in bench.relevant.items():
        assert q in first and all(first[d] == first[q] for d in docs)
    assert "CPC" in bench.describe()


def test_evaluate_and_train_on_cpc_only_data(cpc_only: Path, tiny: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(tiny), "--data", str(cpc_only), "--out", str(tmp_path / "r"),
                                       "--json"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)["models"][0]
    assert "encoding" in result.stderr  # a long evaluation's log shows how far it got, with --json too
    assert 0 <= model["retrieval"]["mrr@10"] <= 1 and 0 <= model["knn_cpc_subclass_accuracy"] <= 1
    job = tmp_path / "job.toml"
    job.write_text(f'model = "{tiny}"\ndata = "{cpc_only}"\noutput_dir = "{tmp_path / "out"}"\n'
                   "batch_size = 8\nmax_steps = 2\nmax_seq_length = 32\n")
    result = CliRunner().invoke(main, ["train", str(job)])
    assert result.exit_code == 0, result.output
    assert "  test: MRR@10 " in result.stdout and "kNN CPC subclass accuracy" in result.stdout


def test_an_empty_benchmark_reports_no_metric(cpc_only: Path, tiny: Path, tmp_path: Path) -> None:
    """Without any qrels the report says what is missing instead of scoring zero."""
    data = tmp_path / "data"
    shutil.copytree(cpc_only, data)
    qrels = pl.read_parquet(data / "eval" / "qrels.parquet")
    qrels.clear().write_parquet(data / "eval" / "qrels.parquet")
    result = CliRunner().invoke(main, ["evaluate", str(tiny), "--data", str(data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "MRR@10 0.0000" not in result.output
    md = (tmp_path / "r" / "report.md").read_text()
    assert "No retrieval metrics: no test query has a relevant patent in this benchmark." in md
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["models"][0]["retrieval"] == {}
    job = tmp_path / "job.toml"
    job.write_text(f'model = "{tiny}"\ndata = "{data}"\noutput_dir = "{tmp_path / "out"}"\n'
                   "batch_size = 8\nmax_steps = 2\nmax_seq_length = 32\n")
    result = CliRunner().invoke(main, ["train", str(job)])
    assert result.exit_code == 0, result.output
    assert "  test: no retrieval metrics (no test query has a relevant patent in " in result.stdout
    assert "MRR@10" not in result.stdout
