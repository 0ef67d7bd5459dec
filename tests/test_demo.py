"""`patentminer demo` and `patentminer pipeline` end to end (small), reuse of finished stages, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from patentminer.cli import main
from patentminer.cypher.connection import Graph
from patentminer.dataset.reader import MinedDataset
from patentminer.demo import DemoOptions, run_demo

SMALL = DemoOptions(patents=700, train_steps=2, eval_queries=40, corpus_size=200, heldout_size=40)


def test_demo_runs_and_reuses(graph: Graph, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out, SMALL, echo=lambda _m: None)
    assert result["ran"] == ["synth", "etl", "import", "embed", "mine:citation-cpc", "mine:random", "mine:knn",
                             "train:citation-cpc", "train:random", "train:knn", "evaluate"]
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert [m["model"] for m in metrics["models"]] == [
        "packaged:all-MiniLM-L6-v2", *[str(out / "models" / s) for s in ("citation-cpc", "random", "knn")]]
    html = (out / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "citation-cpc@v5" in html
    md = (out / "report" / "report.md").read_text()
    assert "## Pipeline" in md and "train:citation-cpc" in md and "make demo" in md
    # A second run reuses everything: no stage runs again and their outputs are left as they were
    # (the report, pipeline.log and stages.json record the run, so they are written again).
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")
              if p.is_file() and p.parent != out and "report" not in p.relative_to(out).parts}
    again = run_demo(out, SMALL, echo=lambda _m: None)
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
    store = MinedDataset.open(tmp_path / "work" / "mined" / "citation-cpc").texts()
    texts = store.get(range(len(store)))
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
    assert failed.stderr.strip().splitlines()[-1] == (
        f"Error: {job}: [train] model directory /nonexistent/model does not exist; give a local "
        "sentence-transformers model, a hub name, or packaged:all-MiniLM-L6-v2.")


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


@pytest.mark.parametrize(("body", "message"), [
    ('[source]\nsynth_patents = 100\n[train]\nmodel = "packaged:all-MiniLM-L6-v2"\nepoch = 3\n',
     "[train] unknown key 'epoch'; valid keys: batch_size, compile, dataloader_workers, document_prompt, epochs, "
     "eval_steps, gradient_accumulation, learning_rate, loss, matryoshka_dims, max_seq_length, max_steps, "
     "mini_batch_size, model, negatives, precision, query_prompt, save_steps, scheduler, seed, triplet_margin, "
     "warmup_ratio."),
    ('[source]\nsynth_patents = 100\n[etl]\nmax_reject = 0.1\n',
     "[etl] unknown key 'max_reject'; valid keys: keep_withdrawn, max_reject_rate."),
    ('[source]\nsynth_patents = 100\n[evaluate]\nmodels = ["x"]\n',
     "[evaluate] unknown key 'models'; valid keys: base_models."),
    ('[source]\nsynth_patents = 100\n[mine]\nstrategies = ["nope"]\n',
     "[mine] unknown strategy 'nope'; use one of citation-cpc, citation-of-citation, cpc-distance, random, "
     "cpc-siblings, knn (optionally NAME@vN)."),
    ('[source]\nsynth_patents = 100\n[mine]\nstrategies = ["knn"]\n',
     '[mine] strategy knn needs an [embed] section naming its model, like [embed] model = '
     '"packaged:all-MiniLM-L6-v2".'),
    ('[source]\nsynth_patents = 100\n[mine]\nnegatives = "three"\n', "[mine] negatives = 'three' is not a valid int."),
    ('[source]\nsynth_patents = 100\ndir = "x"\n', '[source] needs exactly one of dir = "PATH" or synth_patents = N.'),
    ('[sources]\nsynth_patents = 100\n',
     "unknown key 'sources'; valid keys: embed, etl, evaluate, mine, source, train, work_dir."),
    ('[source]\nsynth_patents = 100\n[train]\nmodel = "packaged:all-MiniLM-L6-v2"\nloss = "arcface"\n',
     "[train] loss 'arcface' is not known; use one of mnrl, cached_mnrl, triplet (matryoshka_dims wraps any of "
     "them)."),
])
def test_pipeline_job_is_checked_whole_before_any_stage(tmp_path: Path, body: str, message: str) -> None:
    """A mistake anywhere in the job file is one line naming the file and the key, before anything runs."""
    job = tmp_path / "job.toml"
    job.write_text('work_dir = "work"\n' + body)
    result = CliRunner().invoke(main, ["pipeline", str(job)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"Error: {job}: {message}"]
    assert not (tmp_path / "work").exists()
