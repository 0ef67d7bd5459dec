"""`patentminer demo` end to end (small), and that a second run reuses finished stages."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from patentminer.cli import main
from patentminer.cypher.connection import Graph


def test_demo_runs_and_reuses(graph: Graph, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = CliRunner().invoke(main, ["demo", "--out", str(out), "--patents", "1500"])
    assert first.exit_code == 0, first.output
    assert "Loaded " in first.stdout and "Mined citation-cpc@v1: train " in first.stdout
    summary = json.loads((out / "demo.json").read_text())
    assert summary["counts"]["nodes"]["Patent"] > 1000
    assert (out / "mined" / "citation-cpc" / "train.parquet").exists()
    assert (out / "mined" / "random" / "eval" / "qrels.parquet").exists()
    second = CliRunner().invoke(main, ["demo", "--out", str(out), "--patents", "1500"])
    assert second.exit_code == 0, second.output
    for stage in ("synth: reusing", "etl: reusing", "import: the graph already matches manifest.json"):
        assert stage in second.stdout
    assert json.loads((out / "demo.json").read_text())["mined"] == summary["mined"]
