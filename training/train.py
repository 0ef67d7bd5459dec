"""Fine-tuning a sentence-transformers model on a mined dataset (SentenceTransformerTrainer).

Example::

    config = load_config(Path("jobs/hard.toml"))
    summary = train(config)
    SentenceTransformer(config.output_dir)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import polars as pl

from patentminer.dataset.reader import MinedDataset, TextStore
from patentminer.errors import ConfigError
from patentminer.jobs import PACKAGED, TrainConfig

#: Dev rows used while training: for the retrieval evaluation and the dev loss (a full-size dev split
#: has hundreds of thousands).
DEV_ROWS = 2_000

Echo = Callable[[str], None]


def is_main_process() -> bool:
    """False on every rank but 0 of a `torchrun` / `accelerate launch` job (they must not write outputs)."""
    return int(os.environ.get("RANK", "0")) == 0


def model_path(name: str) -> str:
    """A loadable path for ``packaged:NAME`` (a model shipped in a PyPI package), else ``name``."""
    if name.startswith("packaged:"):
        module = import_module(PACKAGED[name.split(":", 1)[1]])
        return str(Path(module.__file__ or "").parent / "model")
    if name in PACKAGED and not os.environ.get("PATENTMINER_USE_HUB"):
        # Offline machines: the packaged copy, unless the hub is asked for explicitly.
        try:
            return model_path(f"packaged:{name}")
        except ImportError:
            return name
    return name


def load_model(name: str, max_seq_length: int | None = None, device: str | None = None) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(model_path(name), device=device)
    except OSError as e:
        raise ConfigError(f"cannot load model {name!r}: {str(e).splitlines()[0]}; give a local model directory "
                          "or packaged:all-MiniLM-L6-v2 on machines without the hub.") from e
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def choose_precision(requested: str) -> tuple[str, bool, bool]:
    """(device, bf16, fp16): bf16 with TF32 on Ampere or newer, fp16 on older GPUs, fp32 on the CPU."""
    import torch

    if not torch.cuda.is_available():
        if requested in ("fp16", "bf16"):
            raise ConfigError(f"precision = {requested} needs a CUDA GPU; use fp32 or auto on the CPU.")
        return "cpu", False, False
    major, _ = torch.cuda.get_device_capability()
    if requested == "auto":
        requested = "bf16" if major >= 8 else "fp16"
    if requested == "bf16":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return "cuda", requested == "bf16", requested == "fp16"


def dataloader_workers(requested: int, device: str) -> int:
    """Worker processes for batch tokenisation: on a GPU the main process alone cannot tokenise fast enough."""
    if requested >= 0:
        return requested
    return min(4, os.cpu_count() or 1) if device == "cuda" else 0


class TextsOf:
    """A dataset transform: text-store row numbers -> texts, column by column (picklable by the store's
    path, for data-loader workers)."""

    def __init__(self, store: TextStore, columns: list[str]) -> None:
        self.store, self.columns = store, columns

    def __call__(self, batch: dict[str, list[int]]) -> dict[str, list[str]]:
        return {c: self.store.get(batch[c]) for c in self.columns}


def read_split(data: MinedDataset, split: str, config: TrainConfig, limit: int | None = None) -> tuple[Any, int]:
    """The split as a datasets.Dataset with the columns the loss takes (anchor, positive, negative_1..), and K.

    Rows hold row numbers of the text store, turned into texts when a batch is read: a full-size
    split is never in memory as text. ``limit`` keeps the first rows only.
    """
    from datasets import Dataset

    df = data.split(split)
    if limit is not None:
        df = df.head(limit)
    k = 1 if config.loss == "triplet" else (data.negatives if config.negatives is None else config.negatives)
    cols = ["anchor", "positive"] + [f"negative_{i + 1}" for i in range(k)]
    store = data.texts()
    ds = Dataset.from_dict({c: store.rows(df[f"{c}_id"]) for c in cols})
    ds.set_transform(TextsOf(store, cols))
    return ds, k


def build_loss(model: Any, config: TrainConfig) -> Any:
    from sentence_transformers.sentence_transformer import losses

    loss: Any
    if config.loss == "mnrl":
        loss = losses.MultipleNegativesRankingLoss(model)
    elif config.loss == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size)
    else:
        loss = losses.TripletLoss(model, triplet_margin=config.triplet_margin)
    if config.matryoshka_dims:
        dim = model.get_embedding_dimension()
        if config.matryoshka_dims[0] > dim:
            raise ConfigError(f"matryoshka_dims {list(config.matryoshka_dims)} start above the model's embedding "
                              f"size {dim}; use dimensions <= {dim}.")
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=list(config.matryoshka_dims))
    return loss


def dev_evaluator(data: MinedDataset, config: TrainConfig, limit: int = DEV_ROWS) -> Any:
    """Citation retrieval on the dev split (the first ``limit`` rows): anchors query a corpus of dev
    positives and negatives, scored like ``patentminer evaluate``."""
    from patentminer.training.evaluate import RetrievalEvaluator

    dev = data.split("dev").head(limit)
    store = data.texts()
    id_cols = [c for c in dev.columns if c.endswith("_id")]
    ids = pl.concat([dev[c] for c in id_cols]).unique().sort()
    text = dict(zip(ids.to_list(), store.get(store.rows(ids)), strict=True))
    queries = {a: text[a] for a in dev["anchor_id"].to_list()}
    corpus = {c: text[c] for col in id_cols if col != "anchor_id" for c in dev[col].to_list()}
    relevant = {a: {p} for a, p in zip(dev["anchor_id"].to_list(), dev["positive_id"].to_list(), strict=True)}
    return RetrievalEvaluator(queries, corpus, relevant, name="dev", query_prompt=config.query_prompt,
                              document_prompt=config.document_prompt)


def final_dev_metrics(history: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    """The dev metrics the trainer logged at ``step`` (keys as the evaluator returns them), or None when it
    did not evaluate there. When it did, that is the model being saved: no need to encode the dev split again."""
    for entry in reversed(history):
        if entry.get("step") == step and any(k.startswith("eval_dev_") for k in entry):
            return {k.removeprefix("eval_"): v for k, v in entry.items() if k.startswith("eval_dev_")}
    return None


def _latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


def train(config: TrainConfig, resume: bool = False, echo: Echo | None = None,
          callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.data``; returns the summary written to ``training.json``.

    ``callbacks`` are extra transformers TrainerCallbacks (progress hooks, tests).
    """
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers import TrainerCallback

    from patentminer.training.sampler import NoDuplicatePatentsBatchSampler

    say = echo or (lambda _m: None)
    out = Path(config.output_dir)
    data = Path(config.data)
    if (out / "training.json").exists() and not resume:
        raise ConfigError(f"{out} already holds a trained model; choose another output_dir (or --resume an "
                          "interrupted run).")
    device, bf16, fp16 = choose_precision(config.precision)
    dataset = MinedDataset.open(data)
    train_ds, k = read_split(dataset, "train", config)
    dev_ds, _ = read_split(dataset, "dev", config, limit=DEV_ROWS)
    in_batch = config.loss in ("mnrl", "cached_mnrl")
    if in_batch and len(train_ds) < config.batch_size * config.gradient_accumulation:
        raise ConfigError(f"batch_size {config.batch_size} x gradient_accumulation {config.gradient_accumulation} is "
                          f"larger than the {len(train_ds):,} training rows; lower batch_size.")
    if in_batch and config.gradient_accumulation > 1:
        say(f"note: gradient_accumulation = {config.gradient_accumulation} does not add in-batch negatives "
            f"(each step still sees {config.batch_size - 1} of them); for a larger effective batch use "
            "loss = cached_mnrl with a larger batch_size.")
    model = load_model(config.model, config.max_seq_length, device)
    loss = build_loss(model, config)
    main = is_main_process()
    out.mkdir(parents=True, exist_ok=True)
    if main:
        (out / "job.json").write_text(json.dumps(config.to_dict(), indent=2))
    prompts = None
    if config.query_prompt or config.document_prompt:
        prompts = {"anchor": config.query_prompt, "positive": config.document_prompt}
        prompts |= {f"negative_{i + 1}": config.document_prompt for i in range(k)}
    steps_per_epoch = max(1, len(train_ds) // (config.batch_size * config.gradient_accumulation))
    eval_steps = config.eval_steps if config.eval_steps > 0 else steps_per_epoch
    save_steps = config.save_steps or steps_per_epoch
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
        lr_scheduler_type=config.scheduler,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        fp16=fp16,
        batch_sampler=NoDuplicatePatentsBatchSampler if in_batch else BatchSamplers.BATCH_SAMPLER,
        eval_strategy="no" if config.eval_steps < 0 else "steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        logging_steps=max(1, min(eval_steps, 10)),
        report_to="none",
        prompts=prompts,
        dataloader_drop_last=in_batch,
        dataloader_num_workers=dataloader_workers(config.dataloader_workers, device),
        use_cpu=device == "cpu",
        torch_compile=config.compile,
    )
    log_path = out / "train_log.jsonl"

    class JsonLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:  # under torchrun every rank logs; one file line per step
                return
            with log_path.open("a") as fh:
                fh.write(json.dumps({"step": state.global_step, "epoch": state.epoch, "time": time.time(),
                                     **(kwargs.get("logs") or {})}) + "\n")

    evaluator = dev_evaluator(dataset, config)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                                         loss=loss, evaluator=evaluator, callbacks=[JsonLog(), *(callbacks or [])])
    checkpoint = _latest_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        say("no checkpoint to resume from; starting from the base model")
    say(f"training {config.model} on {len(train_ds):,} rows ({config.loss}, K={k}, {device}"
        f"{', bf16' if bf16 else ', fp16' if fp16 else ''})")
    started = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except torch.cuda.OutOfMemoryError as e:
        raise ConfigError(f"CUDA ran out of memory; lower batch_size (now {config.batch_size}) or max_seq_length "
                          f"(now {config.max_seq_length}), or use loss = cached_mnrl with mini_batch_size "
                          f"{max(1, config.mini_batch_size // 2)}.") from e
    seconds = time.monotonic() - started
    if result.global_step == 0:
        raise ConfigError(f"no training step ran: the no-duplicates sampler found no full batch of {config.batch_size} "
                          f"rows without repeated texts among {len(train_ds):,} rows; lower batch_size.")
    summary: dict[str, Any] = {"global_step": result.global_step, "rank": int(os.environ.get("RANK", "0"))}
    world_size = args.world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # the ranks are done together; rank 0 goes on alone
    if not main:
        return summary  # rank 0 evaluates and writes the model; the others are done
    logged = final_dev_metrics(trainer.state.log_history, result.global_step)
    dev_metrics = logged if logged is not None else evaluator(model)
    model.save(str(out))
    summary = {
        "base_model": config.model, "loss": config.loss, "matryoshka_dims": list(config.matryoshka_dims),
        "negatives": k, "global_step": result.global_step, "train_loss": result.training_loss,
        "seconds": round(seconds, 1), "device": device, "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32",
        "dev": {key.removeprefix("dev_"): val for key, val in dev_metrics.items()},
        "dataset": _provenance(data), "resumed_from": str(checkpoint) if checkpoint else None,
        "world_size": world_size,  # the processes the trainer synchronised, not just launched
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _provenance(data: Path) -> dict[str, Any]:
    info = json.loads((data / "dataset.json").read_text()) if (data / "dataset.json").exists() else {}
    q = info.get("query", {})
    return {"path": str(data), "query": q.get("ref"), "sha256": q.get("sha256"), "seed": info.get("seed"),
            "rows": info.get("rows")}


def write_model_card(out: Path, summary: dict[str, Any], test_metrics: dict[str, Any] | None,
                     benchmark: str = "") -> None:
    d = summary["dataset"]
    lines = [
        f"# patentminer model: fine-tuned {summary['base_model']}", "",
        f"- base model: `{summary['base_model']}`",
        f"- loss: {summary['loss']}" + (f" inside Matryoshka {summary['matryoshka_dims']}"
                                         if summary["matryoshka_dims"] else "") + f", {summary['negatives']} hard "
        "negatives per row",
        f"- dataset: `{d['path']}`, mined with `{d['query']}` (sha256 {d['sha256']}), seed {d['seed']}, "
        f"rows {d['rows']}",
        f"- steps: {summary['global_step']}, {summary['seconds']} s on {summary['device']} ({summary['precision']})",
        "", "## Dev metrics", "",
        *[f"- {k}: {v:.4f}" for k, v in summary["dev"].items() if isinstance(v, float)],
    ]
    if test_metrics is not None:
        lines += ["", "## Test metrics", "", f"Benchmark: {benchmark}", ""]
        lines += [f"- {k}: {v:.4f}" for k, v in test_metrics.items() if isinstance(v, float)] or [
            "No retrieval metrics: no test query has a relevant patent in this benchmark."]
    lines += ["", "Load it with `SentenceTransformer(path)`; `job.json` holds the resolved job, "
              "`train_log.jsonl` the training log.", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines))
