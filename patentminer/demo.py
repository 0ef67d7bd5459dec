"""``patentminer demo``: the whole pipeline on built-in synthetic data, for a newcomer.

synthetic PatentsView data -> import CSVs -> Neo4j -> all-MiniLM-L6-v2 embeddings of every patent ->
citation-cpc (graph-mined), random and knn (model-mined, vetoed by the graph) training sets ->
all-MiniLM-L6-v2 fine-tuned on each with the same steps (CPU) -> one report: base vs the three arms.
Finished stages are reused on a second run.

Example::

    result = run_demo(Path("demo-output"), DemoOptions(patents=20_000))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patentminer.pipeline import Job, Pipeline

Echo = Callable[[str], None]
BASE_MODEL = "packaged:all-MiniLM-L6-v2"


@dataclass(frozen=True)
class DemoOptions:
    patents: int = 20_000
    seed: int = 7
    train_steps: int = 80
    # A benchmark of ~3,300 texts: four models are evaluated on it, and the demo keeps to 25 minutes on 2 cores.
    eval_queries: int = 250
    corpus_size: int = 2000
    heldout_size: int = 300


def demo_job(out: Path, options: DemoOptions) -> Job:
    raw: dict[str, Any] = {
        "work_dir": str(out.resolve()),
        "source": {"synth_patents": options.patents, "seed": options.seed},
        "embed": {"model": BASE_MODEL, "max_seq_length": 64},  # the arms train at 64 tokens too
        "mine": {"strategies": ["citation-cpc", "random", "knn"], "negatives": 3, "seed": options.seed,
                 "eval_queries": options.eval_queries, "corpus_size": options.corpus_size,
                 "heldout_size": options.heldout_size},
        "train": {"model": BASE_MODEL, "negatives": 1, "batch_size": 16, "max_steps": options.train_steps,
                  "max_seq_length": 64, "learning_rate": 5e-5, "warmup_ratio": 0.1, "seed": options.seed,
                  "eval_steps": max(1, options.train_steps), "save_steps": max(1, options.train_steps // 2)},
        "evaluate": {"base_models": [BASE_MODEL]},
    }
    return Job.from_dict(raw, Path.cwd())


def run_demo(out: Path, options: DemoOptions, echo: Echo) -> dict[str, Any]:
    """Run the demo job under ``out``; returns the pipeline summary."""
    return Pipeline(demo_job(out, options), echo).run()
