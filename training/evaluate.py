"""Side-by-side evaluation of models on a mined dataset's bounded, held-out benchmark.

For every model: IR metrics on the benchmark (per Matryoshka dimension where the model was trained
for them), kNN CPC-subclass accuracy on held-out patents, and a 2-D scatter plot of those patents
coloured by CPC section. Scores are computed in chunks (:mod:`patentminer.training.metrics`), so
memory depends on the benchmark's bounded size, not the graph's. A benchmark without relevance
judgements gets no IR score: the report says what is missing instead. Writes ``metrics.json``,
``report.md`` and one PNG per model.

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
from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

from patentminer.dataset.reader import Benchmark, MinedDataset
from patentminer.errors import ConfigError
from patentminer.training.metrics import ir_metrics, knn_accuracy, scatter_png

Echo = Callable[[str], None]
HEADLINE = ("mrr@10", "ndcg@10", "map@100", "accuracy@1", "accuracy@10", "recall@10")


def encode(model: Any, texts: list[str], kind: str, prompt: str | None = None, batch_size: int = 64,
           progress: bool = False) -> np.ndarray:
    """Embeddings of ``texts`` as queries or documents (``kind``), with ``prompt`` when given, else the
    model's own prompt for that kind when it declares one."""
    kwargs: dict[str, Any] = {"batch_size": batch_size, "convert_to_numpy": True, "show_progress_bar": progress}
    if prompt:
        kwargs["prompt"] = prompt
    else:
        prompts = getattr(model, "prompts", {}) or {}
        names = (kind,) if kind == "query" else ("document", "passage", "corpus")
        kwargs["prompt_name"] = next((n for n in names if n in prompts), None)
    return np.asarray(model.encode(texts, **kwargs), dtype=np.float32)


class RetrievalEvaluator(SentenceEvaluator):
    """The trainer's dev evaluation, on the same chunked metrics as ``patentminer evaluate``.

    Example::

        ev = RetrievalEvaluator({"q1": "text"}, {"c1": "text"}, {"q1": {"c1"}}, name="dev")
        ev(model)["dev_mrr@10"]
    """

    def __init__(self, queries: dict[str, str], corpus: dict[str, str], relevant: dict[str, set[str]],
                 name: str = "dev", query_prompt: str = "", document_prompt: str = "", batch_size: int = 64) -> None:
        super().__init__()
        self.queries, self.corpus, self.relevant = queries, corpus, relevant
        self.name, self.query_prompt, self.document_prompt = name, query_prompt, document_prompt
        self.batch_size = batch_size
        self.primary_metric = "mrr@10"

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1,
                 steps: int = -1) -> dict[str, float]:
        q = encode(model, list(self.queries.values()), "query", self.query_prompt or None, self.batch_size)
        c = encode(model, list(self.corpus.values()), "document", self.document_prompt or None, self.batch_size)
        scores = ir_metrics(q, c, list(self.queries), list(self.corpus), self.relevant)
        metrics = self.prefix_name_to_metrics(scores, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics


def _trained_dims(path: str) -> list[int]:
    cfg = Path(path) / "job.json"
    if cfg.exists():
        try:
            dims = json.loads(cfg.read_text()).get("matryoshka_dims") or []
            return [int(d) for d in dims]
        except (ValueError, AttributeError):
            return []
    return []


def evaluate_model(name: str, bench: Benchmark, plot: Path | None = None, echo: Echo | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """One model's figures on ``bench``: ``retrieval`` ({} without relevance judgements), ``matryoshka``,
    ``knn_cpc_subclass_accuracy`` (None with too few held-out patents) and the plot's file name."""
    from patentminer.training.train import load_model

    say = echo or (lambda _m: None)
    model = load_model(name)
    result: dict[str, Any] = {"model": name}
    if bench.relevant:
        say(f"  encoding {bench.queries.height:,} queries and {bench.corpus.height:,} corpus patents")
        q = encode(model, bench.queries["text"].to_list(), "query", progress=progress)
        c = encode(model, bench.corpus["text"].to_list(), "document", progress=progress)
        qids, cids = bench.queries["query_id"].to_list(), bench.corpus["corpus_id"].to_list()
        result["dim"] = int(c.shape[1])
        result["retrieval"] = ir_metrics(q, c, qids, cids, bench.relevant)
        dims = [d for d in _trained_dims(name) if d < c.shape[1]]
        if dims:
            result["matryoshka"] = {str(d): ir_metrics(q[:, :d], c[:, :d], qids, cids, bench.relevant)
                                    for d in dims}
        del q, c
    else:
        result["retrieval"] = {}
    held = bench.heldout.filter(bench.heldout["cpc"].str.len_chars() >= 4)
    result["knn_cpc_subclass_accuracy"] = None
    if held.height:
        say(f"  encoding {held.height:,} held-out patents for kNN CPC accuracy")
        h = encode(model, held["text"].to_list(), "document", progress=progress)
        result.setdefault("dim", int(h.shape[1]))
        subclass = [s[:4] for s in held["cpc"].to_list()]
        result["knn_cpc_subclass_accuracy"] = knn_accuracy(h, subclass)
        if plot is not None and held.height > 2:
            scatter_png(h, [s[:1] for s in subclass], str(plot), f"{short_name(name)}: held-out patents by CPC section")
            result["plot"] = plot.name
    return result


def short_name(name: str) -> str:
    """A model's label for tables and plots: the last path component (a strategy's model directory is
    named after it), or the model name."""
    return Path(name.rstrip("/")).name if ("/" in name and not name.startswith("packaged:")) else name


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_")[-60:] or "model"


def evaluate(models: list[str], data: Path, out: Path, echo: Echo | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Evaluate ``models`` on ``data``'s benchmark; writes metrics.json, report.md and plots into ``out``."""
    say = echo or (lambda _m: None)
    if not models:
        raise ConfigError("give at least one MODEL.")
    dataset = MinedDataset.open(data)
    bench = dataset.benchmark()
    out.mkdir(parents=True, exist_ok=True)
    if not bench.relevant:
        say(f"note: {data} has no relevance judgements (no test query has a relevant patent): no retrieval "
            "metrics, kNN CPC accuracy only.")
    results = []
    for name in models:
        say(f"evaluating {name}: {bench.kind} benchmark, {bench.queries.height:,} queries over "
            f"{bench.corpus.height:,} patents; {bench.heldout.height:,} held-out patents")
        results.append(evaluate_model(name, bench, out / f"scatter-{_slug(name)}.png", say, progress))
    info = dataset.info
    report = {"data": str(data), "dataset": {"query": info.get("query"), "seed": info.get("seed"),
                                             "eval": info.get("eval"), "benchmark": bench.describe()},
              "models": results}
    if len(results) > 1 and any(r["retrieval"] for r in results):
        bar_chart(results, out / "metrics.png")
        report["chart"] = "metrics.png"
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out / "metrics.json")
    tmp = out / "report.md.tmp"
    tmp.write_text(render_report(report))
    tmp.replace(out / "report.md")
    return report


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def bar_chart(results: list[dict[str, Any]], path: Path) -> None:
    """The headline metrics per model as grouped bars (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = HEADLINE[:3]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        values = [r["retrieval"].get(m, 0.0) for m in shown]
        ax.bar([j + i * width for j in range(len(shown))], values, width, label=short_name(r["model"]))
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(shown))], shown)
    low = min(r["retrieval"].get(m, 0.0) for r in results for m in shown)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _gains(report: dict[str, Any]) -> list[str]:
    """Each model's difference from the first (the base) and from the one labelled random, where there is one."""
    models = [r for r in report["models"] if r["retrieval"]]
    if len(models) < 2:
        return []
    shown = HEADLINE[:3]
    refs = [("base", models[0])]
    random = next((r for r in models[1:] if short_name(r["model"]).split("@")[0] == "random"), None)
    if random is not None:
        refs.append(("random", random))
    lines = ["| model | " + " | ".join(f"{m} - {name}" for name, _ in refs for m in shown) + " |",
             "|---|" + "---:|" * (len(shown) * len(refs))]
    for r in models[1:]:
        cells = [f"{r['retrieval'][m] - ref['retrieval'][m]:+.4f}" if ref is not r else "-"
                 for _, ref in refs for m in shown]
        lines.append(f"| `{short_name(r['model'])}` | " + " | ".join(cells) + " |")
    return [f"Differences from the base model (`{short_name(models[0]['model'])}`)"
            + (" and from the random-negative model" if random is not None else "") + ":", "", *lines, ""]


def render_report(report: dict[str, Any]) -> str:
    ds = report["dataset"]
    q = ds.get("query") or {}
    lines = [
        "# patentminer evaluation", "",
        f"Data: `{report['data']}`, mined with `{q.get('ref')}` (sha256 `{(q.get('sha256') or '')[:12]}`), "
        f"seed {ds.get('seed')}.", "",
        f"Benchmark: {ds.get('benchmark')}", "",
    ]
    lines += _gains(report)
    if report.get("chart"):
        lines += [f"![headline metrics per model]({report['chart']})", ""]
    if any(r["retrieval"] for r in report["models"]):
        lines += ["| model | " + " | ".join(HEADLINE) + " | kNN CPC subclass |",
                  "|---|" + "---:|" * (len(HEADLINE) + 1)]
        for r in report["models"]:
            m = r["retrieval"]
            lines.append(f"| `{short_name(r['model'])}` | " + " | ".join(_cell(m.get(k)) for k in HEADLINE)
                         + f" | {_cell(r.get('knn_cpc_subclass_accuracy'))} |")
    else:
        lines += ["No retrieval metrics: no test query has a relevant patent in this benchmark.", "",
                  "| model | kNN CPC subclass |", "|---|---:|"]
        lines += [f"| `{short_name(r['model'])}` | {_cell(r.get('knn_cpc_subclass_accuracy'))} |"
                  for r in report["models"]]
    for r in report["models"]:
        if r.get("matryoshka"):
            lines += ["", f"Matryoshka dimensions of `{short_name(r['model'])}` (full: {r['dim']}):", "",
                      "| dim | mrr@10 | ndcg@10 |", "|---:|---:|---:|"]
            lines += [f"| {d} | {_cell(m.get('mrr@10'))} | {_cell(m.get('ndcg@10'))} |"
                      for d, m in r["matryoshka"].items()]
    plots = [r for r in report["models"] if r.get("plot")]
    if plots:
        lines += ["", "## Held-out patents' embeddings by CPC section", ""]
        lines += [f"![{short_name(r['model'])}]({r['plot']})" for r in plots]
    return "\n".join(lines) + "\n"
