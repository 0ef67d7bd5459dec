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
from patentminer.dataset.reader import MinedDataset
from patentminer.etl.convert import EtlOptions, run_etl
from patentminer.etl.synth import SynthConfig, synth
from patentminer.jobs import TrainConfig, load_train_job, parse_set
from patentminer.training.metrics import ir_metrics, knn_accuracy, score_rankings, top_k
from patentminer.training.tiny import build_tiny_encoder
from patentminer.training.train import dev_evaluator, load_model, train


@pytest.fixture(scope="module")
def mined(graph: Graph, runtime: Neo4jRuntime | None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    synth(src, SynthConfig(patents=2500, seed=9))
    csv = tmp_path_factory.mktemp("csv")
    run_etl(src, csv, EtlOptions())
    import_graph(csv, ImportOptions(overwrite=True, method="unwind"), runtime=runtime)
    out = tmp_path_factory.mktemp("mined")
    with Graph(graph.settings) as g:
        mine(g, out, MineOptions(negatives=3, seed=1, corpus_size=1000, eval_queries=300, heldout_size=300))
    return out


@pytest.fixture(scope="module")
def tiny(mined: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = MinedDataset.open(mined).texts()
    texts = store.get(range(len(store)))
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


def _dense_rankings(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """The reference: the whole score matrix, sorted stably (ties by corpus order).

    Each score is its own sum (einsum's loop, not a BLAS product): a BLAS kernel can give identical
    corpus rows different last bits where they fall in different blocks, and then no stable order
    of its scores puts the ties in corpus order.
    """
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return np.argsort(-np.einsum("qd,cd->qc", qn, cn, optimize=False), axis=1, kind="stable")


def _exact_unit_rows(rng: np.random.Generator, n: int, dim: int = 24) -> np.ndarray:
    """Unit rows of 16 entries of +-1/4 and zeros: every cosine is a multiple of 1/16, exact in float32
    whatever the engine or the order of the sums, so rankings can be compared bit for bit (with many ties)."""
    rows = np.zeros((n, dim), dtype=np.float32)
    for r in rows:
        r[rng.choice(dim, size=16, replace=False)] = rng.choice([-0.25, 0.25], size=16)
    return rows


def test_chunked_rankings_and_metrics_equal_the_dense_ones() -> None:
    rng = np.random.default_rng(3)
    corpus = _exact_unit_rows(rng, 1500)
    corpus[10] = corpus[700] = corpus[1400] = corpus[3]  # ties, across chunks
    queries = _exact_unit_rows(rng, 230)
    queries[5] = corpus[3]
    ranked, scores = top_k(queries, corpus, 100, query_chunk=17, corpus_chunk=113)
    dense = _dense_rankings(queries, corpus)[:, :100]
    assert (ranked == dense).all() and (np.diff(scores, axis=1) <= 0).all()
    qids = [f"q{i}" for i in range(len(queries))]
    cids = [f"c{i}" for i in range(len(corpus))]
    relevant = {q: {cids[j] for j in rng.choice(len(corpus), size=int(rng.integers(1, 30)), replace=False)}
                for q in qids[:200]}  # the last 30 queries have none: they do not count
    chunked = ir_metrics(queries, corpus, qids, cids, relevant, query_chunk=17, corpus_chunk=113)
    reference = score_rankings(dense, qids, cids, relevant)
    assert chunked == reference and chunked["queries"] == 200.0
    assert ir_metrics(queries, corpus, qids, cids, {}) == {}


def test_chunked_scores_equal_the_dense_ones_on_real_valued_data() -> None:
    # Real-valued scores differ between engines in their last bits, so near-equal scores may swap
    # places: each rank's score is compared, within float32 rounding, instead of the order.
    rng = np.random.default_rng(3)
    corpus = rng.normal(size=(1500, 24)).astype(np.float32)
    queries = rng.normal(size=(230, 24)).astype(np.float32)
    ranked, scores = top_k(queries, corpus, 100, query_chunk=17, corpus_chunk=113)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    dense = qn.astype(np.float64) @ cn.T.astype(np.float64)
    best = -np.sort(-dense, axis=1)[:, :100]
    assert np.allclose(scores, best, rtol=0, atol=1e-6)
    assert np.allclose(np.take_along_axis(dense, ranked, axis=1), scores, rtol=0, atol=1e-6)


def test_a_query_never_retrieves_itself() -> None:
    emb = np.eye(6, dtype=np.float32) + 0.01
    ids = [f"p{i}" for i in range(6)]
    ranked, _ = top_k(emb, emb, 3, exclude=np.arange(6), corpus_chunk=4)
    assert all(i not in row for i, row in enumerate(ranked.tolist()))
    short, _ = top_k(emb[:1], emb[:2], 5, exclude=np.array([0]))
    assert short.tolist() == [[1, -1, -1, -1, -1]]
    m = ir_metrics(emb, emb, ids, ids, {"p0": {"p0", "p1"}})
    assert m["recall@10"] == 0.5  # p0 itself is never retrieved


def test_knn_accuracy_chunked_equals_dense() -> None:
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(5, 16))
    labels = [f"L{i % 5}" for i in range(400)]
    emb = (centres[[i % 5 for i in range(400)]] + rng.normal(scale=1.5, size=(400, 16))).astype(np.float32)
    fold = np.random.default_rng(0).permutation(400) % 5
    correct = 0
    for f in range(5):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        nn = _dense_rankings(emb[test], emb[train])[:, :5]
        for row, t in zip(nn, test, strict=True):
            votes = [labels[train[j]] for j in row]
            correct += max(sorted(set(votes)), key=votes.count) == labels[t]
    assert knn_accuracy(emb, labels, query_chunk=7, corpus_chunk=50) == correct / 400
    assert 0.3 < correct / 400 < 1.0
    assert knn_accuracy(emb[:9], labels[:9]) is None


def test_dev_metrics_equal_sentence_transformers_evaluator(tiny: Path, mined: Path) -> None:
    """One implementation of the IR metrics: ours equal sentence-transformers' InformationRetrievalEvaluator
    on the same dev benchmark (no query in the corpus, where ours would leave itself out)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    ev = dev_evaluator(MinedDataset.open(mined), load_train_job(job(mined.parent, tiny, mined)))
    corpus = {c: t for c, t in ev.corpus.items() if c not in ev.queries}
    relevant = {q: r & set(corpus) for q, r in ev.relevant.items() if r & set(corpus)}
    ev.corpus, ev.relevant = corpus, relevant
    model = load_model(str(tiny))
    ours = ev(model)
    theirs = InformationRetrievalEvaluator(ev.queries, corpus, relevant, name="dev", mrr_at_k=[10], ndcg_at_k=[10],
                                           accuracy_at_k=[1, 3, 5, 10], precision_recall_at_k=[1, 3, 5, 10],
                                           map_at_k=[100], score_functions=None, show_progress_bar=False)(model)
    shared = [k for k in ours if k.startswith("dev_") and k != "dev_queries"]
    assert len(shared) == 15
    for key in shared:
        assert ours[key] == pytest.approx(theirs["dev_cosine_" + key.removeprefix("dev_")], abs=1e-6), key


def test_training_lowers_loss_and_improves_dev_mrr(tmp_path: Path, tiny: Path, mined: Path) -> None:
    config = load_train_job(job(tmp_path, tiny, mined, max_steps=120, batch_size=16, eval_steps=60, save_steps=60))
    before = dev_evaluator(MinedDataset.open(mined), config)(load_model(str(tiny)))
    summary = train(config)
    log = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]
    assert summary["dev"]["mrr@10"] > before["dev_mrr@10"]
    # The trainer evaluated at its last step; that figure is reused, and it is the saved model's.
    assert any(r["step"] == 120 and "eval_dev_mrr@10" in r for r in log)
    again = dev_evaluator(MinedDataset.open(mined), config)(load_model(str(tmp_path / "out")))
    assert summary["dev"]["mrr@10"] == pytest.approx(again["dev_mrr@10"], abs=1e-6)
    assert summary["global_step"] == 120 and summary["dataset"]["query"] == "citation-cpc@v5"


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
    assert "citation-cpc@v5" in card and "Test metrics" in card
    if "matryoshka_dims" in extra:
        report = json.loads((tmp_path / "out" / "eval" / "metrics.json").read_text())
        assert set(report["models"][0]["matryoshka"]) == {"32", "16"}


def test_test_eval_false_trains_without_the_benchmark(tmp_path: Path, tiny: Path, mined: Path) -> None:
    result = CliRunner().invoke(main, ["train", str(job(tmp_path, tiny, mined, test_eval=False))])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        f"  test: not evaluated (test_eval = false); run `patentminer evaluate {tmp_path / 'out'} --data {mined}`",
        f"  card: {tmp_path / 'out'}/MODEL_CARD.md"]
    assert not (tmp_path / "out" / "eval").exists()
    assert "Test metrics" not in (tmp_path / "out" / "MODEL_CARD.md").read_text()


def test_resume_finishes_at_the_same_step(tmp_path: Path, tiny: Path, mined: Path) -> None:
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 7:
                raise KeyboardInterrupt

    config = load_train_job(job(tmp_path, tiny, mined, max_steps=10, save_steps=5, eval_steps=5))
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt()])
    assert (tmp_path / "out" / "checkpoints" / "checkpoint-5").exists()
    assert not (tmp_path / "out" / "training.json").exists()
    resumed = train(config, resume=True)
    assert resumed["global_step"] == 10 and resumed["resumed_from"].endswith("checkpoint-5")


def copy_dataset(src: Path, dst: Path, change: Any) -> Path:
    """A copy of a mined dataset whose train and dev splits went through ``change``."""
    import shutil

    shutil.copytree(src, dst)
    for split in ("train", "dev"):
        change(pl.read_parquet(src / f"{split}.parquet")).write_parquet(dst / f"{split}.parquet")
    return dst


def _error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    return result.stderr.strip().splitlines()[-1]


def test_bad_job_files(tmp_path: Path, tiny: Path, mined: Path) -> None:
    p = job(tmp_path, tiny, mined, loss="arcface")
    assert _error(["train", str(p)]) == (f"Error: {p}: loss 'arcface' is not known; use one of mnrl, cached_mnrl, "
                                         "triplet (matryoshka_dims wraps any of them).")
    p = job(tmp_path, tiny, mined, epoch=3)
    assert _error(["train", str(p)]).startswith(f"Error: {p}: unknown key 'epoch'; valid keys: batch_size, ")
    p = job(tmp_path, tiny, mined, model=str(tmp_path / "missing"))
    assert _error(["train", str(p)]) == (
        f"Error: {p}: model directory {tmp_path / 'missing'} does not exist; give a local sentence-transformers model, "
        "a hub name, or packaged:all-MiniLM-L6-v2.")
    p = job(tmp_path, tiny, mined, matryoshka_dims=[128, 64])
    assert _error(["train", str(p)]) == ("Error: matryoshka_dims [128, 64] start above the model's embedding size 64; "
                                         "use dimensions <= 64.")
    bad = copy_dataset(mined, tmp_path / "bad", lambda df: df.drop("positive_id"))
    p = job(tmp_path, tiny, bad)
    assert _error(["train", str(p)]) == (
        f"Error: {bad}/train.parquet lacks column 'positive_id'; a split holds anchor_id, positive_id and "
        "negative_1_id..negative_K_id (as `patentminer mine` writes them).")
    old = tmp_path / "old"
    old.mkdir()
    (old / "dataset.json").write_text(json.dumps({"format": 1}))
    assert _error(["train", str(job(tmp_path, tiny, old))]) == (
        f"Error: {old} holds dataset format 1 (texts in every row, an unbounded benchmark); this patentminer reads "
        "format 2: mine it again with `patentminer mine ... --overwrite`.")
    p = job(tmp_path, tiny, mined)
    assert _error(["train", str(p), "--set", "batch_size"]) == (
        "Error: --set 'batch_size' is not key=value; for example --set batch_size=64.")
    assert _error(["train", str(p), "--set", "compile=maybe"]) == f"Error: {p}: compile = 'maybe' is not a valid bool."
    assert _error(["train", str(p), "--set", "dataloader_workers=-2"]) == (
        f"Error: {p}: dataloader_workers = -2; use -1 (automatic), 0 (tokenise in the training process) or a number "
        "of worker processes.")
    assert _error(["train", str(p), "--set", "eval_steps=-5"]) == (
        f"Error: {p}: eval_steps = -5, save_steps = 0; use 0 (once per epoch), a number of steps, or eval_steps = -1 "
        "(no dev evaluation while training).")
    assert _error(["train", str(p), "--set", "batch_size=many"]) == (
        f"Error: {p}: batch_size = 'many' is not a valid int.")
    rows = pl.read_parquet(mined / "train.parquet").height
    assert _error(["train", str(p), "--set", f"batch_size={rows + 1}"]) == (
        f"Error: batch_size {rows + 1} x gradient_accumulation 1 is larger than the {rows:,} training rows; lower "
        "batch_size.")


def test_no_full_batch_is_an_error_not_a_model(tmp_path: Path, tiny: Path, mined: Path) -> None:
    """Every row shares one positive: the no-duplicates sampler forms no batch, so no step would run."""
    same = copy_dataset(mined, tmp_path / "same",
                        lambda df: df.head(40).with_columns(pl.lit(df["positive_id"][0]).alias("positive_id")))
    p = job(tmp_path, tiny, same, batch_size=8)
    assert _error(["train", str(p)]) == (
        "Error: no training step ran: the no-duplicates sampler found no full batch of 8 rows without repeated "
        "texts among 40 rows; lower batch_size.")
    assert not (tmp_path / "out" / "training.json").exists()


def test_evaluate_report_side_by_side(tmp_path: Path, tiny: Path, mined: Path) -> None:
    config = load_train_job(job(tmp_path, tiny, mined, max_steps=6))
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
    assert "citation-cpc@v5" in md and "Differences from the base model (`model`)" in md
    assert md.count("| `model` |") == 1 and md.count("| `out` |") == 2  # metrics row; gains + metrics rows


def test_set_overrides_are_typed(tmp_path: Path, tiny: Path, mined: Path) -> None:
    assert parse_set(["batch_size=8", "compile=false", "eval_steps=-1", "matryoshka_dims=[64, 32]", "loss=mnrl"]) == {
        "batch_size": 8, "compile": False, "eval_steps": -1, "matryoshka_dims": [64, 32], "loss": "mnrl"}
    config = load_train_job(job(tmp_path, tiny, mined), parse_set(["batch_size=8", "matryoshka_dims=[64, 32]"]))
    assert isinstance(config, TrainConfig) and config.batch_size == 8 and config.matryoshka_dims == (64, 32)
    assert config.dataloader_workers == -1 and config.data == str(mined)


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
