"""Which negatives train better models? Paired runs of several mined datasets ("arms") over several seeds.

Takes `patentminer mine` outputs of the same graph that share one held-out benchmark (same seed, test
split and benchmark options; the script checks that their eval files are identical), e.g. ``random``,
``citation-cpc``, ``knn`` and ``knn --veto none``. For every seed it fine-tunes the same base model on each
arm with identical settings, evaluates every model on the benchmark, and prints mean +- sd per arm, the
paired difference from the random arm and from the base model per seed, and how many seeds each arm is
ahead of random on. ``--plot`` draws the headline metrics per arm with the seed spread.

The base model defaults to the packaged all-MiniLM-L6-v2: a pretrained model, what users fine-tune.

    .venv/bin/python benchmarks/negatives.py --arm random=demo-output/mined/random \\
        --arm citation-cpc=demo-output/mined/citation-cpc --arm knn=demo-output/mined/knn \\
        --arm knn-noveto=runs/knn-noveto --seeds 1 2 3 --steps 400 --plot benchmarks/negatives.png
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METRICS = ("mrr@10", "ndcg@10", "map@100", "recall@10", "accuracy@1")
PLOTTED = ("mrr@10", "ndcg@10", "map@100")
BASE = "packaged:all-MiniLM-L6-v2"


def eval_digest(data: Path) -> str:
    h = hashlib.sha256()
    for f in ("queries", "corpus", "qrels", "heldout"):
        h.update((data / "eval" / f"{f}.parquet").read_bytes())
    return h.hexdigest()


def train_arm(base: str, data: Path, out: Path, seed: int, args: argparse.Namespace) -> float:
    from patentminer.jobs import TrainConfig
    from patentminer.training.train import train

    cfg = TrainConfig(model=base, data=str(data), output_dir=str(out), loss="mnrl", negatives=args.negatives,
                      batch_size=args.batch, max_steps=args.steps, learning_rate=args.lr, warmup_ratio=0.1,
                      max_seq_length=args.seq, seed=seed, eval_steps=-1, save_steps=args.steps)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its log dicts; keep stdout for the report
        summary = train(cfg)
    return float(summary["seconds"])


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from patentminer.dataset.reader import MinedDataset
    from patentminer.training.evaluate import evaluate_model

    arms = dict(args.arm)
    digests = {name: eval_digest(path) for name, path in arms.items()}
    if len(set(digests.values())) != 1:
        sys.exit("Error: the arms' eval/ files differ; mine every arm from the same graph with the same --seed, "
                 "--test-from and benchmark options so that they share one held-out benchmark.")
    first = next(iter(arms.values()))
    bench = MinedDataset.open(first).benchmark()
    work = Path(tempfile.mkdtemp(prefix="bench-negatives-"))
    base_scores = evaluate_model(args.model, bench)
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        row: dict[str, Any] = {"seed": seed}
        for name, data in arms.items():
            t0 = time.perf_counter()
            out = work / f"{name}-{seed}"
            row[f"{name}_train_s"] = round(train_arm(args.model, data, out, seed, args), 1)
            result = evaluate_model(str(out), bench)
            row[name] = {**result["retrieval"], "knn": result["knn_cpc_subclass_accuracy"]}
            print(f"seed {seed} {name:>12}: MRR@10 {row[name]['mrr@10']:.4f}  NDCG@10 {row[name]['ndcg@10']:.4f}  "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
        runs.append(row)
    summary: dict[str, Any] = {"base": {m: {"mean": round(base_scores["retrieval"][m], 4), "sd": 0.0}
                                        for m in METRICS}}
    for name in arms:
        summary[name] = {m: stats([r[name][m] for r in runs]) for m in METRICS}
    reference = args.reference if args.reference in arms else None
    for name in arms:
        diffs = {m: [r[name][m] - base_scores["retrieval"][m] for r in runs] for m in METRICS}
        summary[f"{name} - base"] = {m: stats(d) for m, d in diffs.items()}
        if reference and name != reference:
            paired = {m: [r[name][m] - r[reference][m] for r in runs] for m in METRICS}
            summary[f"{name} - {reference}"] = {m: {**stats(d), "seeds_ahead": sum(x > 0 for x in d)}
                                                for m, d in paired.items()}
    return {"model": args.model, "arms": {k: str(v) for k, v in arms.items()},
            "settings": {"steps": args.steps, "batch": args.batch, "negatives": args.negatives, "lr": args.lr,
                         "seq": args.seq, "seeds": args.seeds},
            "benchmark": bench.describe(), "base": base_scores, "runs": runs, "summary": summary}


def plot(report: dict[str, Any], path: Path) -> None:
    """Grouped bars: the headline metrics per arm (mean over seeds, sd as error bars), the base model as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = list(report["arms"])
    s = report["summary"]
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=110)
    width = 0.8 / len(arms)
    x = np.arange(len(PLOTTED))
    for i, arm in enumerate(arms):
        ax.bar(x + i * width, [s[arm][m]["mean"] for m in PLOTTED], width,
               yerr=[s[arm][m]["sd"] for m in PLOTTED], capsize=3, label=arm)
    for j, m in enumerate(PLOTTED):
        ax.hlines(s["base"][m]["mean"], j - 0.1, j + 0.9, colors="black", linestyles="dashed",
                  label="base model" if j == 0 else None)
    ax.set_xticks(x + width * (len(arms) - 1) / 2, PLOTTED)
    low = min(s[name][m]["mean"] for name in ["base", *arms] for m in PLOTTED)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set_title(f"{report['model']}, {report['settings']['steps']} steps, seeds {report['settings']['seeds']}",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = ["| arm (mean +- sd over seeds) | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name in ["base", *report["arms"]]:
        lines.append(f"| {name} | " + " | ".join(
            f"{s[name][m]['mean']:.4f}" + (f" +- {s[name][m]['sd']:.4f}" if name != "base" else "")
            for m in METRICS) + " |")
    for key, row in s.items():
        if " - " in key:
            lines.append(f"| {key}, paired | " + " | ".join(
                f"{row[m]['mean']:+.4f} +- {row[m]['sd']:.4f}"
                + (f" ({row[m]['seeds_ahead']}/{len(report['runs'])})" if "seeds_ahead" in row[m] else "")
                for m in METRICS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", action="append", required=True, type=lambda v: tuple(v.split("=", 1)),
                    help="NAME=DIR, a mined dataset; repeat for every arm.")
    ap.add_argument("--reference", default="random", help="The arm the paired differences are taken from.")
    ap.add_argument("--model", default=BASE, help="Base model every arm fine-tunes.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--negatives", type=int, default=3, help="Mined negatives per row used by the loss.")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--plot", type=Path, default=None, help="Write the bar chart here (PNG).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for arm in args.arm:
        if len(arm) != 2 or not (Path(arm[1]) / "dataset.json").exists():
            sys.exit(f"Error: --arm {'='.join(arm)} is not NAME=DIR of a `patentminer mine` output.")
    args.arm = [(n, Path(p)) for n, p in args.arm]
    report = run(args)
    if args.plot:
        plot(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {report['model']}; {report['settings']}")
    print(f"benchmark: {report['benchmark']}")
    print(table(report))


if __name__ == "__main__":
    main()
