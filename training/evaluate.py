"""Side-by-side evaluation of models on a mined dataset's held-out citation retrieval benchmark.

For every model: IR metrics (per Matryoshka dimension where the model was trained for them),
kNN CPC-subclass accuracy of the corpus embeddings, and a 2-D scatter plot coloured by CPC
section. Writes ``metrics.json``, ``report.md`` and one PNG per model.

Example::

    evaluate(["packaged:all-MiniLM-L6-v2", "models/hard"], Path("runs/hard"), Path("reports/hard"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from patentminer.errors import ConfigError
from patentminer.training.metrics import ir_metrics, knn_accuracy, scatter_png
from patentminer.training.train import load_model

Echo = Callable[[str], None]
HEADLINE = ("mrr@10", "ndcg@10", "map@100", "accuracy@1", "accuracy@10", "recall@10")


def load_benchmark(data: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, set[str]]]:
    ev = data / "eval"
    for f in ("queries", "corpus", "qrels"):
        if not (ev / f"{f}.parquet").exists():
            raise ConfigError(f"{data} has no eval/{f}.parquet; point --data at a `patentminer mine` output.")
    queries = pl.read_parquet(ev / "queries.parquet")
    corpus = pl.read_parquet(ev / "corpus.parquet")
    qrels = pl.read_parquet(ev / "qrels.parquet")
    relevant: dict[str, set[str]] = {}
    for q, c in qrels.select("query_id", "corpus_id").iter_rows():
        relevant.setdefault(q, set()).add(c)
    return queries, corpus, relevant


def _encode(model: Any, texts: list[str], kind: str) -> np.ndarray:
    """Encode with the model's own prompts (query/document) when it declares them."""
    prompts = getattr(model, "prompts", {}) or {}
    name = next((n for n in ((kind,) if kind == "query" else ("document", "passage", "corpus")) if n in prompts),
                None)
    return np.asarray(model.encode(texts, batch_size=64, prompt_name=name, convert_to_numpy=True,
                                   show_progress_bar=False))


def _trained_dims(path: str) -> list[int]:
    cfg = Path(path) / "job.json"
    if cfg.exists():
        try:
            dims = json.loads(cfg.read_text()).get("matryoshka_dims") or []
            return [int(d) for d in dims]
        except (ValueError, AttributeError):
            return []
    return []


def evaluate_model(name: str, queries: pl.DataFrame, corpus: pl.DataFrame, relevant: dict[str, set[str]],
                   plot: Path | None = None) -> dict[str, Any]:
    model = load_model(name)
    q = _encode(model, queries["text"].to_list(), "query")
    c = _encode(model, corpus["text"].to_list(), "document")
    qids, cids = queries["query_id"].to_list(), corpus["corpus_id"].to_list()
    result: dict[str, Any] = {"model": name, "dim": int(c.shape[1])}
    result["retrieval"] = ir_metrics(q, c, qids, cids, relevant)
    dims = [d for d in _trained_dims(name) if d < c.shape[1]]
    if dims:
        result["matryoshka"] = {str(d): ir_metrics(q[:, :d], c[:, :d], qids, cids, relevant) for d in dims}
    if "cpc" in corpus.columns:
        labelled = corpus.with_row_index("i").filter(pl.col("cpc").str.len_chars() >= 4)
        idx = labelled["i"].to_numpy()
        subclass = [s[:4] for s in labelled["cpc"].to_list()]
        result["knn_cpc_subclass_accuracy"] = knn_accuracy(c[idx], subclass)
        if plot is not None and len(idx) > 2:
            scatter_png(c[idx], [s[:1] for s in subclass], str(plot), f"{name}: test corpus by CPC section")
            result["plot"] = plot.name
    return result


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_")[-60:] or "model"


def evaluate(models: list[str], data: Path, out: Path, echo: Echo | None = None) -> dict[str, Any]:
    """Evaluate ``models`` on ``data``'s benchmark; writes metrics.json, report.md and plots into ``out``."""
    say = echo or (lambda _m: None)
    if not models:
        raise ConfigError("give at least one MODEL.")
    queries, corpus, relevant = load_benchmark(data)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in models:
        say(f"evaluating {name} on {queries.height:,} queries over {corpus.height:,} patents")
        results.append(evaluate_model(name, queries, corpus, relevant, out / f"scatter-{_slug(name)}.png"))
    dataset = json.loads((data / "dataset.json").read_text()) if (data / "dataset.json").exists() else {}
    report = {"data": str(data), "dataset": {"query": dataset.get("query"), "seed": dataset.get("seed"),
                                             "eval": dataset.get("eval")}, "models": results}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out / "metrics.json")
    (out / "report.md").write_text(render_report(report))
    return report


def render_report(report: dict[str, Any]) -> str:
    ds = report["dataset"]
    q = ds.get("query") or {}
    ev = ds.get("eval") or {}
    lines = [
        "# patentminer evaluation", "",
        f"Held-out citation retrieval on `{report['data']}` (mined with `{q.get('ref')}`, sha256 "
        f"`{(q.get('sha256') or '')[:12]}`, seed {ds.get('seed')}): {ev.get('queries')} queries, "
        f"{ev.get('corpus')} corpus patents, {ev.get('qrels')} relevant pairs.", "",
        "| model | " + " | ".join(HEADLINE) + " | kNN CPC subclass |",
        "|---|" + "---:|" * (len(HEADLINE) + 1),
    ]
    for r in report["models"]:
        m = r["retrieval"]
        knn = r.get("knn_cpc_subclass_accuracy")
        lines.append(f"| `{r['model']}` | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in HEADLINE)
                     + f" | {knn:.4f} |" if knn is not None else " | - |")
    for r in report["models"]:
        if r.get("matryoshka"):
            lines += ["", f"Matryoshka dimensions of `{r['model']}` (full: {r['dim']}):", "",
                      "| dim | mrr@10 | ndcg@10 |", "|---:|---:|---:|"]
            lines += [f"| {d} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} |" for d, m in r["matryoshka"].items()]
    plots = [r for r in report["models"] if r.get("plot")]
    if plots:
        lines += ["", "## Test corpus embeddings by CPC section", ""]
        lines += [f"![{r['model']}]({r['plot']})" for r in plots]
    return "\n".join(lines) + "\n"
