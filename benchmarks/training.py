"""Training throughput: our path vs the PatentCL configuration, same data, same model, one run.

- ours: SentenceTransformerTrainer, MultipleNegativesRankingLoss with all K mined negatives, no-duplicates
  batches, bf16 + TF32 on recent GPUs / fp32 on the CPU, tokenising dataloader workers on a GPU;
- PatentCL: the legacy ``model.fit`` with TripletLoss (anchor, positive, negative_1), batch 16,
  ``use_amp=True`` (fp16 autocast; a no-op on the CPU).

Our path runs ``--warm`` + ``--steps`` steps and its time per step is read off its training log after the
warm-up steps; PatentCL's ``fit()`` logs no step times, so it runs twice (``--warm`` steps, then ``--steps``)
and its time per step is the difference of the wall times over the difference of the step counts. Either
way CUDA start-up, model loading, dataloader start-up and compiling stay out of the figures.
Reports samples/s (training rows), tokens/s (non-padding tokens fed to the
encoder) and peak GPU memory, and on a GPU the model FLOPs utilisation: (6 x non-embedding parameters +
12 x layers x hidden x tokens-per-text) FLOPs per token (the PaLM appendix B count) times tokens/s, over the
device's dense bf16 peak from its datasheet and over the bf16 matrix-product rate measured in the same run.

``--model base`` builds a BERT-base-shaped encoder from a config, no download: 12 layers x 768, 3072
feed-forward, BERT-base's 85.6M non-embedding parameters, so the same FLOPs per token as the 110M
bert-base-uncased; its WordPiece vocabulary is trained on the data and stops at the ~5k words synthetic text
has, so it holds 90M parameters in all (a bigger vocabulary adds lookups, not arithmetic).
``--fill`` lengthens every text to about ``--seq`` tokens by appending the following rows' texts, because
synthetic abstracts are ~60 tokens and real title + abstract pairs run 150-250 (this benchmark measures
speed, not quality).

    .venv/bin/python benchmarks/training.py --data runs/hard                      # tiny local encoder, CPU
    python benchmarks/training.py --data runs/hard --model base --seq 256 --fill --batch 32 --batch 128 --json
    python benchmarks/training.py --data runs/hard --model base --seq 256 --fill --batch 128 --profile-step --profile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

# Dense (no sparsity) bf16/fp16 tensor-core peaks from the datasheets, TFLOP/s.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def cuda_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fill_texts(model: Any, data: Path, out: Path, rows: int, seq: int) -> Path:
    """A copy of ``data`` (train and dev, first ``rows`` rows) whose texts run to about ``seq`` tokens: each is
    its own text followed by the texts of the next patents in the text store."""
    from patentminer.dataset.assemble import write_texts
    from patentminer.dataset.reader import MinedDataset

    src = MinedDataset.open(data)
    store = src.texts()
    per_text = mean_tokens(model, store.get(range(min(500, len(store)))), 10_000)
    factor = max(1, math.ceil(seq / per_text))
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "dataset.json", out / "dataset.json")
    shutil.copytree(data / "eval", out / "eval", dirs_exist_ok=True)
    splits = {"train": src.split("train").head(rows), "dev": src.split("dev").head(500), "test": src.split("test")}
    ids = pl.concat([df[c] for df in splits.values() for c in df.columns if c.endswith("_id")]).unique().sort()
    filled = [" ".join(store.get([(r + j) % len(store) for j in range(factor)])) for r in store.rows(ids).tolist()]
    write_texts([pl.DataFrame({"id": ids, "text": filled})], out / "texts.arrow")
    for split, df in splits.items():
        df.write_parquet(out / f"{split}.parquet")
    return out


def mean_tokens(model: Any, texts: list[str], seq: int) -> float:
    enc = model.tokenizer(texts, truncation=True, max_length=seq, padding=False)
    return sum(len(ids) for ids in enc["input_ids"]) / max(1, len(texts))


def run_ours(model_path: str, data: Path, warm: int, steps: int, seq: int, batch: int,
             compile: bool = False) -> dict[str, Any]:
    """``warm + steps`` steps; the time per step is read off the training log between step ``warm`` and the end,
    so model loading, dataloader start-up and a compile stay out of it."""
    import torch

    from patentminer.jobs import TrainConfig
    from patentminer.training.train import train

    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cfg = TrainConfig(model=model_path, data=str(data), output_dir=str(out), loss="mnrl", batch_size=batch,
                      max_steps=warm + steps, max_seq_length=seq, eval_steps=-1, save_steps=10_000, compile=compile)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    summary = train(cfg)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    times = {r["step"]: r["time"] for r in logged if "loss" in r}
    first = min(s for s in times if s >= warm)
    last = max(times)
    shutil.rmtree(out, ignore_errors=True)
    step_s = (times[last] - times[first]) / (last - first)
    return {"seconds": round(summary["seconds"], 2), "steps": warm + steps, "timed_steps": f"{first}-{last}",
            "batch": batch, "texts_per_row": 2 + summary["negatives"],
            "precision": summary["precision"] + ("+compile" if compile else ""), "peak_gib": peak,
            "step_ms": round(step_s * 1000, 2), "samples_per_s": round(batch / step_s, 1)}


def run_patentcl(model_path: str, data: Path, steps: int, seq: int, batch: int = 16) -> dict[str, Any]:
    import torch
    from sentence_transformers import InputExample
    from sentence_transformers.sentence_transformer import losses
    from torch.utils.data import DataLoader

    from patentminer.dataset.reader import MinedDataset
    from patentminer.training.train import load_model

    model = load_model(model_path, seq)
    df = MinedDataset.open(data).split_texts("train", limit=steps * batch)
    examples = [InputExample(texts=[a, p, n]) for a, p, n in df.select("anchor", "positive", "negative_1").iter_rows()]
    loader: Any = DataLoader(examples, shuffle=True, batch_size=batch)  # type: ignore[arg-type]
    loss = losses.TripletLoss(model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    # The legacy fit() writes checkpoints/ into the working directory; keep that out of the checkout.
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as scratch, contextlib.chdir(scratch):
        t0 = time.perf_counter()
        model.fit(train_objectives=[(loader, loss)], epochs=1, steps_per_epoch=steps, warmup_steps=0, use_amp=True,
                  show_progress_bar=False)
        cuda_sync()
        seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"seconds": seconds, "steps": steps, "batch": batch, "texts_per_row": 3,
            "precision": "fp16-autocast" if torch.cuda.is_available() else "fp32", "peak_gib": peak}


def steady(warm: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """Per-step time from two runs of one path: (T_full - T_warm) / (steps_full - steps_warm).

    (The legacy fit() writes no per-step log to read times from.)"""
    step_s = (full["seconds"] - warm["seconds"]) / (full["steps"] - warm["steps"])
    rows_per_s = full["batch"] / step_s
    return {**full, "warm_seconds": round(warm["seconds"], 2), "warm_steps": warm["steps"],
            "seconds": round(full["seconds"], 2), "step_ms": round(step_s * 1000, 2),
            "samples_per_s": round(rows_per_s, 1)}


def measured_matmul_tflops() -> float | None:
    """bf16 8192^3 matrix products on random data, median of 10 after warm-up (the device's practical peak)."""
    import torch

    if not torch.cuda.is_available():
        return None
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


def build_model(name: str | None, data: Path) -> str:
    from patentminer.training.tiny import build_tiny_encoder

    if name not in (None, "tiny", "base"):
        return name
    from patentminer.dataset.reader import MinedDataset

    store = MinedDataset.open(data).texts()
    texts = store.get(range(min(20_000, len(store))))
    out = Path(tempfile.mkdtemp(prefix=f"bench-{name or 'tiny'}-"))
    if name == "base":
        return str(build_tiny_encoder(texts, out, hidden=768, layers=12, heads=12, intermediate=3072,
                                      vocab_size=30522, max_len=512))
    return str(build_tiny_encoder(texts, out, hidden=256, layers=4, heads=4))


def flops_per_token(model: Any, tokens_per_text: float) -> tuple[float, int, int]:
    """Training FLOPs per token (PaLM appendix B), all parameters, non-embedding parameters."""
    params = sum(p.numel() for p in model.parameters())
    embed = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    hf = model[0].auto_model.config
    non_embed = params - embed
    return 6 * non_embed + 12 * hf.num_hidden_layers * hf.hidden_size * tokens_per_text, params, non_embed


def run_all(model_path: str, data: Path, args: argparse.Namespace, batches: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for b in batches:
        for compiled in (False, True) if args.compile and b == batches[-1] else (False,):
            name = f"ours_b{b}" + ("_compile" if compiled else "")
            print(f"{name}: {args.warm} + {args.steps} steps", file=sys.stderr)
            results[name] = run_ours(model_path, data, args.warm, args.steps, args.seq, b, compiled)
    # PatentCL sees as many rows as our first batch size's run: 16 rows a step.
    cl_steps = max(args.steps * batches[0] // 16, args.warm * 2)
    cl_warm = max(args.warm * batches[0] // 16, 2)
    print(f"PatentCL, batch 16: {cl_warm} + {cl_steps} steps", file=sys.stderr)
    warm = run_patentcl(model_path, data, cl_warm, args.seq)
    results["patentcl"] = steady(warm, run_patentcl(model_path, data, cl_steps, args.seq))
    return results


def time_steps(fn: Callable[[], None], steps: int = 10, warm: int = 3) -> tuple[float, float]:
    """(ms per step over ``steps``, seconds of the ``warm`` steps before them, compiling included)."""
    t0 = time.perf_counter()
    for _ in range(warm):
        fn()
    cuda_sync()
    t1 = time.perf_counter()
    for _ in range(steps):
        fn()
    cuda_sync()
    return (time.perf_counter() - t1) / steps * 1000, t1 - t0


def profile_step(args: argparse.Namespace) -> None:
    """Where one training step of our path spends its time: the MNRL step without the trainer, eager and
    compiled (``--profile-step``). Tokenises one batch of ``--batch`` rows once, then times forward + backward +
    AdamW under bf16 autocast (fp32 on the CPU), the GPU synchronised around the timed steps: eager, eager with
    dropout off, and with the inner transformer compiled (``--compile``); ``--profile`` prints torch.profiler's
    table of the kernels that took the most time. Against ``run_ours``'s step time: the trainer's overhead."""
    import torch
    from sentence_transformers.sentence_transformer import losses

    from patentminer.dataset.reader import MinedDataset
    from patentminer.training.train import choose_precision, load_model

    batch = (args.batch or [32])[0]
    device, bf16, _ = choose_precision("auto")
    model_path = build_model(args.model, args.data)
    model = load_model(model_path, args.seq, device)
    data = args.data
    if args.fill:
        data = fill_texts(model, data, Path(tempfile.mkdtemp(prefix="prof-fill-")), batch, args.seq)
    df = MinedDataset.open(data).split_texts("train", limit=batch)
    cols = ["anchor", "positive"] + [c for c in df.columns if c.startswith("negative_") and not c.endswith("_id")]
    features: list[dict[str, Any]] = []
    for c in cols:
        f = model.preprocess(df[c].to_list())
        features.append({k: v.to(device) if hasattr(v, "to") else v for k, v in f.items()})
    loss_fn = losses.MultipleNegativesRankingLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(features, None)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    shape = tuple(features[0]["input_ids"].shape)
    print(f"{device}, batch {batch} rows x {len(cols)} texts of {shape[1]} tokens, "
          f"attention {model[0].auto_model.config._attn_implementation}")
    model.train()
    ms, warm = time_steps(step, args.steps)
    print(f"eager step (forward + backward + AdamW): {ms:.1f} ms (warm-up {warm:.1f} s)")
    model.eval()  # dropout off
    ms, _ = time_steps(step, args.steps)
    print(f"eager step, dropout off: {ms:.1f} ms")
    model.train()
    if args.compile:
        inner = model[0].model
        model[0].model = torch.compile(inner)
        ms, warm = time_steps(step, args.steps)
        print(f"compiled transformer: {ms:.1f} ms (warm-up with the compile {warm:.1f} s)")
        model[0].model = inner
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
            cuda_sync()
        key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=55))


def main() -> None:
    import torch

    from patentminer.training.train import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="A `patentminer mine` output.")
    ap.add_argument("--model", default=None,
                    help="tiny (default: 4 x 256 BERT), base (12 x 768 BERT, 110M) or a model path.")
    ap.add_argument("--steps", type=int, default=30, help="Timed steps of our path (PatentCL: the same rows).")
    ap.add_argument("--warm", type=int, default=5, help="Warm-up steps left out of the timing.")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, action="append", help="Our batch size; repeat for a sweep (default 32).")
    ap.add_argument("--fill", action="store_true", help="Lengthen texts to about --seq tokens (see above).")
    ap.add_argument("--compile", action="store_true", help="Also time the last --batch with compile = true.")
    ap.add_argument("--profile-step", action="store_true",
                    help="Time one MNRL step without the trainer instead (see profile_step); --batch: the first.")
    ap.add_argument("--profile", action="store_true", help="With --profile-step: the kernels that took the most time.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.profile_step:
        profile_step(args)
        return
    batches = args.batch or [32]
    if args.steps <= args.warm:
        sys.exit(f"Error: --steps ({args.steps}) must be larger than --warm ({args.warm}).")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    model_path = build_model(args.model, args.data)
    model = load_model(model_path, args.seq)
    data = args.data
    rows_needed = max(batches) * (args.warm + args.steps)
    if args.fill:
        data = fill_texts(model, data, Path(tempfile.mkdtemp(prefix="bench-fill-")), rows_needed, args.seq)
    from patentminer.dataset.reader import MinedDataset

    df = MinedDataset.open(data).split_texts("train", limit=2000)
    neg_cols = [c for c in df.columns if c.startswith("negative_") and not c.endswith("_id")]
    tok_text = mean_tokens(model, [t for c in ["anchor", "positive", *neg_cols] for t in df[c].to_list()], args.seq)
    fpt, params, non_embed = flops_per_token(model, tok_text)
    del model
    matmul = measured_matmul_tflops()
    datasheet = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)

    # The trainer and fit() print their log dicts; stdout is kept for the report (--json).
    with contextlib.redirect_stdout(sys.stderr):
        results = run_all(model_path, data, args, batches)
    for r in results.values():
        r["tokens_per_s"] = round(r["samples_per_s"] * r["texts_per_row"] * tok_text, 1)
        tflops = fpt * r["tokens_per_s"] / 1e12
        r["model_tflops"] = round(tflops, 1)
        if datasheet:
            r["mfu"] = round(tflops / datasheet, 4)
        if matmul:
            r["of_measured_matmul"] = round(tflops / matmul, 4)
    cl = results["patentcl"]
    report: dict[str, Any] = {
        "device": device, "torch": torch.__version__, "parameters": params, "non_embedding_parameters": non_embed,
        "seq": args.seq, "fill": args.fill, "tokens_per_text": round(tok_text, 1),
        "train_flops_per_token": fpt, "datasheet_bf16_tflops": datasheet,
        "measured_bf16_matmul_tflops": round(matmul, 1) if matmul else None, "runs": results,
        "ratios": {name: {"samples_per_s": round(r["samples_per_s"] / cl["samples_per_s"], 2),
                          "tokens_per_s": round(r["tokens_per_s"] / cl["tokens_per_s"], 2)}
                   for name, r in results.items() if name != "patentcl"},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"device {device}, {params / 1e6:.1f}M parameters ({non_embed / 1e6:.1f}M non-embedding), max {args.seq} "
          f"tokens, {tok_text:.0f} tokens/text" + (f", bf16 matmul {matmul:.0f} TFLOP/s measured" if matmul else ""))
    for name, r in results.items():
        mem = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] else ""
        mfu = f", MFU {r['mfu']:.1%} ({r['of_measured_matmul']:.1%} of measured)" if "mfu" in r else ""
        print(f"{name:<10} batch {r['batch']:>4}: {r['step_ms']:.1f} ms/step, {r['samples_per_s']} samples/s, "
              f"{r['tokens_per_s']:.0f} tokens/s ({r['texts_per_row']} texts/row, {r['precision']}){mfu}{mem}")
    for name, ratio in report["ratios"].items():
        print(f"{name} / PatentCL: samples/s x{ratio['samples_per_s']}, tokens/s x{ratio['tokens_per_s']}")


if __name__ == "__main__":
    main()
