"""Training throughput: our path vs the PatentCL configuration, same data, same model, one run.

- ours: SentenceTransformerTrainer, MultipleNegativesRankingLoss with all K mined negatives, no-duplicates
  batches, batch 32, bf16 on recent GPUs / fp32 on the CPU;
- PatentCL: the legacy ``model.fit`` with TripletLoss (anchor, positive, negative_1), batch 16,
  ``use_amp=True`` (fp16 autocast; a no-op on the CPU).

Reports samples/s (training rows) and tokens/s (non-padding tokens fed to the encoder), and on a GPU
the model FLOPs utilisation (6 x parameters x tokens / s over the device's dense bf16 peak).

    .venv/bin/python benchmarks/training.py --data runs/hard                  # tiny local encoder, CPU
    .venv/bin/python benchmarks/training.py --data runs/hard --model bert-base-uncased --seq 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def _tokens(model: Any, texts: list[str], seq: int) -> int:
    tok = model.tokenizer
    enc = tok(texts, truncation=True, max_length=seq, padding=False)
    return sum(len(ids) for ids in enc["input_ids"])


def run_ours(model_path: str, data: Path, steps: int, seq: int, batch: int) -> dict[str, Any]:
    from patentminer.training.config import TrainConfig
    from patentminer.training.train import train

    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cfg = TrainConfig(model=model_path, data=str(data), output_dir=str(out), loss="mnrl", batch_size=batch,
                      max_steps=steps, max_seq_length=seq, eval_steps=10_000, save_steps=10_000)
    t0 = time.perf_counter()
    summary = train(cfg)
    return {"seconds_incl_setup": time.perf_counter() - t0, "train_seconds": summary["seconds"],
            "rows": steps * batch, "texts_per_row": 2 + summary["negatives"], "precision": summary["precision"]}


def run_patentcl(model_path: str, data: Path, steps: int, seq: int, batch: int = 16) -> dict[str, Any]:
    from sentence_transformers import InputExample
    from sentence_transformers.sentence_transformer import losses
    from torch.utils.data import DataLoader

    from patentminer.training.train import load_model

    model = load_model(model_path, seq)
    df = pl.read_parquet(data / "train.parquet").head(steps * batch)
    examples = [InputExample(texts=[a, p, n]) for a, p, n in df.select("anchor", "positive", "negative_1").iter_rows()]
    loader = DataLoader(examples, shuffle=True, batch_size=batch)  # type: ignore[arg-type]
    loss = losses.TripletLoss(model)
    # The legacy fit() writes checkpoints/ into the working directory; keep that out of the checkout.
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as scratch, contextlib.chdir(scratch):
        t0 = time.perf_counter()
        model.fit(train_objectives=[(loader, loss)], epochs=1, steps_per_epoch=steps, warmup_steps=0, use_amp=True,
                  show_progress_bar=False)
        seconds = time.perf_counter() - t0
    return {"train_seconds": seconds, "rows": steps * batch, "texts_per_row": 3, "precision": "fp16-autocast"}


def main() -> None:
    import torch

    from patentminer.training.tiny import build_tiny_encoder
    from patentminer.training.train import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="A `patentminer mine` output.")
    ap.add_argument("--model", default=None, help="Model to train (default: a tiny local BERT, 4 layers x 256).")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model_path = args.model
    if model_path is None:
        texts = pl.read_parquet(args.data / "train.parquet")["anchor"].head(5000).to_list()
        model_path = str(build_tiny_encoder(texts, Path(tempfile.mkdtemp(prefix="bench-tiny-")), hidden=256,
                                            layers=4, heads=4))
    ours = run_ours(model_path, args.data, args.steps, args.seq, 32)
    cl = run_patentcl(model_path, args.data, args.steps * 2, args.seq, 16)  # same number of rows
    model = load_model(model_path, args.seq)
    params = sum(p.numel() for p in model.parameters())
    df = pl.read_parquet(args.data / "train.parquet")
    neg_cols = [c for c in df.columns if c.startswith("negative_") and not c.endswith("_id")]
    sample = df.head(ours["rows"])
    tok_ours = _tokens(model, [t for c in ["anchor", "positive", *neg_cols] for t in sample[c].to_list()], args.seq)
    tok_cl = _tokens(model, [t for c in ["anchor", "positive", "negative_1"] for t in sample[c].to_list()], args.seq)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    report: dict[str, Any] = {"device": device, "parameters": params, "seq": args.seq}
    for name, r, toks in (("ours", ours, tok_ours), ("patentcl", cl, tok_cl)):
        r["samples_per_s"] = round(r["rows"] / r["train_seconds"], 2)
        r["tokens_per_s"] = round(toks / r["train_seconds"], 1)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
        if peak:
            r["mfu"] = round(6 * params * r["tokens_per_s"] / (peak * 1e12), 4)
        report[name] = r
    report["samples_per_s_ratio"] = round(ours["samples_per_s"] / cl["samples_per_s"], 2)
    report["tokens_per_s_ratio"] = round(ours["tokens_per_s"] / cl["tokens_per_s"], 2)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"device {device}, {params / 1e6:.1f}M parameters, max {args.seq} tokens")
    for name in ("ours", "patentcl"):
        r = report[name]
        print(f"{name:<9} {r['rows']:>6} rows in {r['train_seconds']:.1f}s: {r['samples_per_s']} samples/s, "
              f"{r['tokens_per_s']} tokens/s ({r['texts_per_row']} texts/row, {r['precision']})"
              + (f", MFU {r['mfu']:.1%}" if "mfu" in r else ""))
    print(f"ours / PatentCL: samples/s x{report['samples_per_s_ratio']}, tokens/s x{report['tokens_per_s_ratio']}")


if __name__ == "__main__":
    main()
