"""Training and evaluation with a tiny local encoder on a dataset mined from the real graph."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
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
from patentminer.etl.convert import EtlOptions, run_etl
from patentminer.etl.synth import SynthConfig, synth
from patentminer.training.config import TrainConfig, load_config
from patentminer.training.metrics import ir_metrics
from patentminer.training.tiny import build_tiny_encoder
from patentminer.training.train import dev_evaluator, load_model, train


@pytest.fixture(scope="module")
def mined(graph: Graph, runtime: Neo4jRuntime | None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    synth(src, SynthConfig(patents=2500, seed=9))
    csv = tmp_path_factory.mktemp("csv")
    run_etl(src, csv, EtlOptions())
    import_graph(csv, ImportOptions(overwrite=True), runtime=runtime)
    out = tmp_path_factory.mktemp("mined")
    with Graph(graph.settings) as g:
        mine(g, out, MineOptions(negatives=3, seed=1, corpus_size=1000))
    return out


@pytest.fixture(scope="module")
def tiny(mined: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = pl.read_parquet(mined / "train.parquet")["anchor"].to_list()
    return build_tiny_encoder(texts, tmp_path_factory.mktemp("tiny") / "model", hidden=64, layers=2)


def job(tmp_path: Path, tiny: Path, mined: Path, **kw: Any) -> Path:
    values = {"model": str(tiny), "data": str(mined), "output_dir": str(tmp_path / "out"), "batch_size": 16,
              "max_steps": 4, "max_seq_length": 64, "learning_rate": 1e-3, **kw}
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_metrics_match_hand_computed_example() -> None:
    # Two queries, four documents on the unit circle; q1's relevant doc ranks 2nd, q2's ranks 1st and 3rd.
    corpus = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    queries = np.array([[1.0, 0.1], [0.0, 1.0]])
    m = ir_metrics(queries, corpus, ["q1", "q2"], ["d1", "d2", "d3", "d4"], {"q1": {"d2"}, "q2": {"d3", "d1"}})
    # q1 ranking: d1, d2, d3, d4 -> hit at rank 2. q2 ranking: d3, d2, d1, d4 -> hits at ranks 1 and 3.
    assert m["accuracy@1"] == 0.5 and m["accuracy@3"] == 1.0
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert m["map@100"] == pytest.approx((1 / 2 + (1 + 2 / 3) / 2) / 2)
    assert m["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["recall@1"] == pytest.approx((0 + 1 / 2) / 2)


def test_training_lowers_loss_and_improves_dev_mrr(tmp_path: Path, tiny: Path, mined: Path) -> None:
    config = load_config(job(tmp_path, tiny, mined, max_steps=120, batch_size=32, eval_steps=60, save_steps=60))
    before = dev_evaluator(pl.read_parquet(mined / "dev.parquet"), config)(load_model(str(tiny)))
    summary = train(config)
    log = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]
    assert summary["dev"]["cosine_mrr@10"] > before["dev_cosine_mrr@10"]
    assert summary["global_step"] == 120 and summary["dataset"]["query"] == "citation-cpc@v3"


@pytest.mark.parametrize("extra", [{"loss": "cached_mnrl", "mini_batch_size": 4}, {"loss": "triplet"},
                                   {"loss": "mnrl", "matryoshka_dims": [64, 32, 16]}])
def test_every_loss_runs(tmp_path: Path, tiny: Path, mined: Path, extra: dict[str, Any]) -> None:
    from sentence_transformers import SentenceTransformer

    result = CliRunner().invoke(main, ["train", str(job(tmp_path, tiny, mined, **extra)), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["global_step"] == 4 and summary["loss"] == extra["loss"]
    model = SentenceTransformer(str(tmp_path / "out"))
    assert model.encode(["a patent"]).shape == (1, 64)
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert "citation-cpc@v3" in card and "Test metrics" in card
    if "matryoshka_dims" in extra:
        report = json.loads((tmp_path / "out" / "eval" / "metrics.json").read_text())
        assert set(report["models"][0]["matryoshka"]) == {"32", "16"}


def test_resume_finishes_at_the_same_step(tmp_path: Path, tiny: Path, mined: Path) -> None:
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 7:
                raise KeyboardInterrupt

    config = load_config(job(tmp_path, tiny, mined, max_steps=10, save_steps=5, eval_steps=5))
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt()])
    assert (tmp_path / "out" / "checkpoints" / "checkpoint-5").exists()
    assert not (tmp_path / "out" / "training.json").exists()
    resumed = train(config, resume=True)
    assert resumed["global_step"] == 10 and resumed["resumed_from"].endswith("checkpoint-5")


def _error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    return result.stderr.strip().splitlines()[-1]


def test_bad_job_files(tmp_path: Path, tiny: Path, mined: Path) -> None:
    p = job(tmp_path, tiny, mined, loss="arcface")
    assert _error(["train", str(p)]) == ("Error: loss 'arcface' is not known; use one of mnrl, cached_mnrl, triplet "
                                         "(matryoshka_dims wraps any of them).")
    p = job(tmp_path, tiny, mined, epoch=3)
    assert _error(["train", str(p)]).startswith(f"Error: {p}: unknown key 'epoch'; valid keys: batch_size, ")
    p = job(tmp_path, tiny, mined, model=str(tmp_path / "missing"))
    assert _error(["train", str(p)]) == (
        f"Error: model directory {tmp_path / 'missing'} does not exist; give a local sentence-transformers model, a "
        "hub name, or packaged:all-MiniLM-L6-v2.")
    p = job(tmp_path, tiny, mined, matryoshka_dims=[128, 64])
    assert _error(["train", str(p)]) == ("Error: matryoshka_dims [128, 64] start above the model's embedding size 64; "
                                         "use dimensions <= 64.")
    bad = tmp_path / "bad"
    bad.mkdir()
    pl.read_parquet(mined / "train.parquet").drop("positive").write_parquet(bad / "train.parquet")
    pl.read_parquet(mined / "dev.parquet").write_parquet(bad / "dev.parquet")
    p = job(tmp_path, tiny, bad)
    assert _error(["train", str(p)]) == (
        f"Error: {bad}/train.parquet lacks column 'positive'; it needs anchor, positive and negative_1..negative_K "
        "(as `patentminer mine` writes them).")
    p = job(tmp_path, tiny, mined)
    assert _error(["train", str(p), "--set", "batch_size"]) == (
        "Error: --set 'batch_size' is not key=value; for example --set batch_size=64.")
    assert _error(["train", str(p), "--set", "compile=maybe"]) == "Error: compile = 'maybe' is not a valid bool."
    assert _error(["train", str(p), "--set", "dataloader_workers=-2"]) == (
        "Error: dataloader_workers = -2; use -1 (automatic), 0 (tokenise in the training process) or a number of "
        "worker processes.")
    assert _error(["train", str(p), "--set", "eval_steps=-5"]) == (
        "Error: eval_steps = -5, save_steps = 0; use 0 (once per epoch), a number of steps, or eval_steps = -1 (no "
        "dev evaluation while training).")
    rows = pl.read_parquet(mined / "train.parquet").height
    assert _error(["train", str(p), "--set", f"batch_size={rows + 1}"]) == (
        f"Error: batch_size {rows + 1} x gradient_accumulation 1 is larger than the {rows:,} training rows; lower "
        "batch_size.")


def test_no_full_batch_is_an_error_not_a_model(tmp_path: Path, tiny: Path, mined: Path) -> None:
    """Every row shares one positive: the no-duplicates sampler forms no batch, so no step would run."""
    same = tmp_path / "same"
    same.mkdir()
    for split in ("train", "dev"):
        df = pl.read_parquet(mined / f"{split}.parquet").head(40)
        df.with_columns(pl.lit(df["positive"][0]).alias("positive")).write_parquet(same / f"{split}.parquet")
    p = job(tmp_path, tiny, same, batch_size=8)
    assert _error(["train", str(p)]) == (
        "Error: no training step ran: the no-duplicates sampler found no full batch of 8 rows without repeated "
        "texts among 40 rows; lower batch_size.")
    assert not (tmp_path / "out" / "training.json").exists()


def test_evaluate_report_side_by_side(tmp_path: Path, tiny: Path, mined: Path) -> None:
    config = load_config(job(tmp_path, tiny, mined, max_steps=6))
    train(config)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["evaluate", str(tiny), config.output_dir, "--data", str(mined), "--out",
                                       str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "metrics.json").read_text())
    assert [m["model"] for m in report["models"]] == [str(tiny), config.output_dir]
    for m in report["models"]:
        assert 0 <= m["retrieval"]["mrr@10"] <= 1 and 0 <= m["knn_cpc_subclass_accuracy"] <= 1
        assert (out / m["plot"]).stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert md.count("| `") == 2 and "citation-cpc@v3" in md


def test_config_defaults_are_frozen(tmp_path: Path, tiny: Path, mined: Path) -> None:
    config = load_config(job(tmp_path, tiny, mined), {"batch_size": "8", "compile": "false", "eval_steps": "-1"})
    assert isinstance(config, TrainConfig) and config.batch_size == 8
    assert config.compile is False and config.eval_steps == -1 and config.dataloader_workers == -1
    with pytest.raises(AttributeError):
        config.batch_size = 4  # type: ignore[misc]


def test_torchrun_two_processes_train_one_model(tmp_path: Path, tiny: Path, mined: Path) -> None:
    """The multi-GPU path, on two CPU processes (gloo): one model, one log line per step, rank 0 writes."""
    path = job(tmp_path, tiny, mined, max_steps=6, save_steps=3, eval_steps=3, batch_size=8)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "patentminer.cli",
                             "train", str(path), "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["world_size"] == 2 and summary["global_step"] == 6
    out = tmp_path / "out"
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    keys = [(r["step"], tuple(sorted(r.keys() - {"time"}))) for r in lines]
    assert len(keys) == len(set(keys)), keys  # no line written twice
    assert load_model(str(out)).encode(["a patent"]).shape[-1] == 64
    assert (out / "MODEL_CARD.md").exists() and json.loads((out / "training.json").read_text())["world_size"] == 2
