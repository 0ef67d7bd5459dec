"""Do graph-mined hard negatives train better models than random ones? Paired runs over several seeds.

Takes two `patentminer mine` outputs of the same graph that share one held-out benchmark (same seed and
test split; e.g. ``citation-cpc`` and ``random``, as `make demo` writes them), trains the same base model on
each with identical settings for every seed, evaluates every model on the held-out citation retrieval set,
and prints mean +- sd per strategy and the paired difference (hard - random) per seed.

The base model is by default a small BERT built here and trained from scratch (a tokenizer trained on the
training texts, random initialisation from the seed), so that everything the model knows comes from the
training signal; ``--model`` takes a local model or ``packaged:all-MiniLM-L6-v2`` instead.

    .venv/bin/python benchmarks/negatives.py --hard demo-output/mined/citation-cpc \\
        --random demo-output/mined/random --seeds 1 2 3 --steps 300
    .venv/bin/python benchmarks/negatives.py ... --model packaged:all-MiniLM-L6-v2 --steps 120 --lr 5e-5 --json
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

import polars as pl

METRICS = ("mrr@10", "ndcg@10", "map@100", "recall@10", "accuracy@1")


def _eval_digest(data: Path) -> str:
    h = hashlib.sha256()
    for f in ("queries", "corpus", "qrels"):
        h.update((data / "eval" / f"{f}.parquet").read_bytes())
    return h.hexdigest()


def _tiny_base(hard: Path, out: Path, seed: int, hidden: int, layers: int) -> str:
    from patentminer.training.tiny import build_tiny_encoder

    df = pl.read_parquet(hard / "train.parquet", columns=["anchor", "positive"])
    texts = df["anchor"].to_list() + df["positive"].to_list()
    path = build_tiny_encoder(texts, out, hidden=hidden, layers=layers, heads=max(1, hidden // 64),
                              vocab_size=4000, seed=seed)
    return str(path)


def _train(base: str, data: Path, out: Path, seed: int, args: argparse.Namespace) -> float:
    from patentminer.training.config import TrainConfig
    from patentminer.training.train import train

    cfg = TrainConfig(model=base, data=str(data), output_dir=str(out), loss="mnrl", negatives=args.negatives,
                      batch_size=args.batch, max_steps=args.steps, learning_rate=args.lr, warmup_ratio=0.1,
                      max_seq_length=args.seq, seed=seed, eval_steps=args.steps, save_steps=args.steps)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its log dicts; keep stdout for the report
        summary = train(cfg)
    return float(summary["seconds"])


def _tfidf(queries: pl.DataFrame, corpus: pl.DataFrame, relevant: dict[str, set[str]]) -> dict[str, float]:
    """A lexical reference: TF-IDF cosine (sublinear tf). How much of the benchmark word overlap alone solves."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    from patentminer.training.metrics import ir_metrics

    vec = TfidfVectorizer(sublinear_tf=True).fit(corpus["text"].to_list() + queries["text"].to_list())
    q = vec.transform(queries["text"].to_list()).toarray().astype(np.float32)
    c = vec.transform(corpus["text"].to_list()).toarray().astype(np.float32)
    return ir_metrics(q, c, queries["query_id"].to_list(), corpus["corpus_id"].to_list(), relevant)


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from patentminer.training.evaluate import evaluate_model, load_benchmark

    if _eval_digest(args.hard) != _eval_digest(args.random):
        sys.exit(f"Error: {args.hard}/eval and {args.random}/eval differ; mine both with the same --seed, "
                 "--test-from and --corpus-size so that they share one held-out benchmark.")
    queries, corpus, relevant = load_benchmark(args.hard)
    work = Path(tempfile.mkdtemp(prefix="bench-negatives-"))
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        base = args.model or _tiny_base(args.hard, work / f"base-{seed}", seed, args.hidden, args.layers)
        row: dict[str, Any] = {"seed": seed}
        if args.model is None or seed == args.seeds[0]:
            row["base"] = evaluate_model(base, queries, corpus, relevant)["retrieval"]
        for name, data in (("hard", args.hard), ("random", args.random)):
            t0 = time.perf_counter()
            seconds = _train(base, data, work / f"{name}-{seed}", seed, args)
            row[name] = evaluate_model(str(work / f"{name}-{seed}"), queries, corpus, relevant)["retrieval"]
            row[f"{name}_train_s"] = round(seconds, 1)
            print(f"seed {seed} {name:>6}: MRR@10 {row[name]['mrr@10']:.4f}  NDCG@10 {row[name]['ndcg@10']:.4f}  "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
        runs.append(row)
    summary: dict[str, Any] = {}
    for name in ("base", "hard", "random"):
        vals = [r[name] for r in runs if name in r]
        summary[name] = {m: _stats([v[m] for v in vals]) for m in METRICS}
    diffs = {m: [r["hard"][m] - r["random"][m] for r in runs] for m in METRICS}
    summary["hard_minus_random"] = {m: {**_stats(d), "seeds_hard_ahead": sum(x > 0 for x in d)}
                                    for m, d in diffs.items()}
    summary["tfidf"] = {m: {"mean": round(v, 4), "sd": 0.0} for m, v in _tfidf(queries, corpus, relevant).items()
                        if m in METRICS}
    return {"model": args.model or f"tiny BERT from scratch ({args.layers}x{args.hidden})",
            "settings": {"steps": args.steps, "batch": args.batch, "negatives": args.negatives, "lr": args.lr,
                         "seq": args.seq, "seeds": args.seeds},
            "benchmark": {"queries": queries.height, "corpus": corpus.height,
                          "qrels": sum(len(v) for v in relevant.values())},
            "runs": runs, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hard", type=Path, required=True, help="Mined dataset with graph hard negatives.")
    ap.add_argument("--random", type=Path, required=True, help="Mined dataset with random negatives (same seed).")
    ap.add_argument("--model", default=None, help="Base model (default: a small BERT trained from scratch).")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=3, help="Mined negatives per row used by the loss.")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--hidden", type=int, default=128, help="Width of the from-scratch model.")
    ap.add_argument("--layers", type=int, default=2, help="Depth of the from-scratch model.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for d in (args.hard, args.random):
        if not (d / "train.parquet").exists() or not (d / "eval" / "qrels.parquet").exists():
            sys.exit(f"Error: {d} is not a `patentminer mine` output (no train.parquet or eval/).")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    s = report["summary"]
    print(f"model: {report['model']}; {report['settings']}; benchmark {report['benchmark']}")
    print(f"{'':<8}" + "".join(f"{m:>20}" for m in METRICS))
    for name in ("tfidf", "base", "hard", "random"):
        print(f"{name:<8}" + "".join(f"{s[name][m]['mean']:>12.4f} +-{s[name][m]['sd']:.4f}" for m in METRICS))
    d = s["hard_minus_random"]
    print(f"{'h - r':<8}" + "".join(f"{d[m]['mean']:>+12.4f} +-{d[m]['sd']:.4f}" for m in METRICS))
    print(f"seeds with hard ahead (of {len(report['runs'])}): "
          + ", ".join(f"{m} {d[m]['seeds_hard_ahead']}" for m in METRICS))


if __name__ == "__main__":
    main()
