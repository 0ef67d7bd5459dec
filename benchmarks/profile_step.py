"""Where one training step of our path spends its time: the MNRL step without the trainer, eager and compiled.

Tokenises one batch of ``--batch`` rows (anchor, positive, K negatives) of a mined dataset once, then times
forward + backward + AdamW under bf16 autocast (fp32 on the CPU) with the GPU synchronised around the
timed steps: eager, eager with dropout off, and with the inner transformer compiled (``--compile``).
``--profile`` prints torch.profiler's table of the kernels that took the most device time. The step time
here against `benchmarks/training.py`'s is the trainer's and dataloader's overhead.

    python benchmarks/profile_step.py --data runs/hard --model base --seq 256 --fill --batch 128 --profile
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/training.py: model building and text filling
from training import build_model, cuda_sync, fill_texts


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


def main() -> None:
    from sentence_transformers.sentence_transformer import losses

    from patentminer.training.train import choose_precision, load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="A `patentminer mine` output.")
    ap.add_argument("--model", default=None, help="tiny (default), base, or a model path (as in training.py).")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--fill", action="store_true", help="Lengthen texts to about --seq tokens.")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="Also time the step with the transformer compiled.")
    ap.add_argument("--profile", action="store_true", help="Print the kernels that took the most time.")
    args = ap.parse_args()

    device, bf16, _ = choose_precision("auto")
    model_path = build_model(args.model, args.data)
    model = load_model(model_path, args.seq, device)
    data = args.data
    if args.fill:
        data = fill_texts(model, data, Path(tempfile.mkdtemp(prefix="prof-fill-")), args.batch, args.seq)
    df = pl.read_parquet(data / "train.parquet").head(args.batch)
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
    print(f"{device}, batch {args.batch} rows x {len(cols)} texts of {shape[1]} tokens, "
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


if __name__ == "__main__":
    main()
