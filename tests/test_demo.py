"""`patentminer demo` and `patentminer pipeline` end to end (small), reuse of finished stages, failures."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from patentminer.cli import main
from patentminer.cypher.connection import Graph
from patentminer.demo import DemoOptions, run_demo


def test_demo_runs_and_reuses(graph: Graph, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out, DemoOptions(patents=1500, train_steps=2, corpus_size=400), echo=lambda _m: None)
    assert result["ran"] == ["synth", "etl", "import", "mine:citation-cpc", "mine:random", "train:citation-cpc",
                             "train:random", "evaluate"]
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert [m["model"] for m in metrics["models"]] == [
        "packaged:all-MiniLM-L6-v2", str(out / "models" / "citation-cpc"), str(out / "models" / "random")]
    html = (out / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "citation-cpc@v3" in html
    md = (out / "report" / "report.md").read_text()
    assert "## Pipeline" in md and "train:citation-cpc" in md and "make demo" in md
    # A second run reuses everything: no stage runs again and their outputs are left as they were
    # (the report, pipeline.log and stages.json record the run, so they are written again).
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")
              if p.is_file() and p.parent != out and "report" not in p.relative_to(out).parts}
    again = run_demo(out, DemoOptions(patents=1500, train_steps=2, corpus_size=400), echo=lambda _m: None)
    assert again["ran"] == []
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_pipeline_redoes_only_what_changed_and_names_failures(graph: Graph, tmp_path: Path) -> None:
    from patentminer.training.tiny import build_tiny_encoder

    job = tmp_path / "job.toml"
    base = """work_dir = "work"
[source]
synth_patents = 1200
seed = 3
[mine]
strategies = ["citation-cpc"]
negatives = 2
corpus_size = 300
limit_anchors = 400
"""
    job.write_text(base)
    first = CliRunner().invoke(main, ["pipeline", str(job), "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["ran"] == ["synth", "etl", "import", "mine:citation-cpc"]
    texts = pl.read_parquet(tmp_path / "work" / "mined" / "citation-cpc" / "train.parquet")["anchor"].to_list()
    tiny = build_tiny_encoder(texts, tmp_path / "tiny")
    job.write_text(base + f'[train]\nmodel = "{tiny}"\nmax_steps = 2\nbatch_size = 8\nmax_seq_length = 32\n')
    second = CliRunner().invoke(main, ["pipeline", str(job), "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["ran"] == ["train:citation-cpc", "evaluate"]
    third = CliRunner().invoke(main, ["pipeline", str(job), "--from", "mine", "--json"])
    assert json.loads(third.stdout)["ran"] == ["mine:citation-cpc", "train:citation-cpc", "evaluate"]
    job.write_text(base + '[train]\nmodel = "/nonexistent/model"\nmax_steps = 2\n')
    failed = CliRunner().invoke(main, ["pipeline", str(job)])
    assert failed.exit_code == 1
    assert failed.stderr.strip().splitlines()[-1].startswith("Error: model directory /nonexistent/model does not")


def test_pipeline_killed_during_mining_resumes_without_redoing_finished_stages(graph: Graph, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    job = tmp_path / "job.toml"
    job.write_text('work_dir = "work"\n[source]\nsynth_patents = 3000\nseed = 4\n[mine]\n'
                   'strategies = ["citation-cpc"]\nnegatives = 2\ncorpus_size = 300\nbatch_size = 25\nworkers = 1\n')
    exe = str(Path(sys.executable).with_name("patentminer"))
    proc = subprocess.Popen([exe, "pipeline", str(job)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ))
    parts = tmp_path / "work" / "mined" / "citation-cpc" / "parts"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.exists() and len(list(parts.glob("*.parquet"))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the pipeline finished before it could be killed"
    assert not (tmp_path / "work" / "mined" / "citation-cpc" / "dataset.json").exists()
    again = CliRunner().invoke(main, ["pipeline", str(job), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ran"] == ["mine:citation-cpc"]
    assert (tmp_path / "work" / "mined" / "citation-cpc" / "dataset.json").exists()
