"""``patentminer pipeline JOB.toml``: data -> import CSVs -> Neo4j -> mined sets -> models -> report.

Each stage records a hash of its inputs (its settings and the hashes of the stages it reads)
in ``WORK/stages.json`` and is skipped when that hash is unchanged and its output is there, so
re-running after a failure, or after editing only the training section, redoes only what changed.
A failing stage stops the run with the stage named; nothing downstream runs on partial output.

Example job::

    work_dir = "runs/demo"
    [source]
    synth_patents = 20000          # or: dir = "/data/patentsview"
    seed = 7
    [mine]
    strategies = ["citation-cpc", "random"]
    negatives = 3
    [train]
    model = "packaged:all-MiniLM-L6-v2"
    max_steps = 150
    [evaluate]
    base_models = ["packaged:all-MiniLM-L6-v2"]
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from patentminer.errors import PatentminerError
from patentminer.jobs import PipelineJob, load_pipeline_job, pipeline_job

Echo = Callable[[str], None]


class StageError(PatentminerError):
    """A pipeline stage failed; the message names the stage and its log."""


@dataclass(frozen=True)
class Job:
    """A validated pipeline job (:class:`patentminer.jobs.PipelineJob`) and the file it came from."""

    spec: PipelineJob
    path: Path | None = None

    @property
    def work_dir(self) -> Path:
        return Path(self.spec.work_dir)

    @staticmethod
    def from_dict(raw: dict[str, Any], base: Path, path: Path | None = None) -> Job:
        return Job(pipeline_job(raw, base, path or base / "job.toml"), path)

    @staticmethod
    def load(path: Path) -> Job:
        return Job(load_pipeline_job(path), path)


def _exists(path: Path) -> bool:
    return path.exists()


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Pipeline:
    def __init__(self, job: Job, echo: Echo, from_stage: str | None = None, force: bool = False) -> None:
        self.job = job
        self.echo = echo
        self.from_stage = from_stage
        self.forcing = force
        self.work = job.work_dir
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_path = self.work / "stages.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.log = self.work / "pipeline.log"
        self.ran: list[str] = []
        self.current = ""

    def resumable(self, out: Path) -> bool:
        """Whether ``out`` holds partial work of this very stage run (same input hash), and mark it so.

        A killed stage resumes from its parts or checkpoints; a stage whose inputs changed starts clean.
        """
        marker = out / ".pipeline-stage"
        same = marker.exists() and marker.read_text() == self.current and not self.forcing
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(self.current)
        return same

    def say(self, message: str) -> None:
        self.echo(message)
        with self.log.open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def stage(self, name: str, inputs: Any, done: Callable[[], bool], run: Callable[[], dict[str, Any]]) -> str:
        """Run ``run`` unless its input hash is recorded and ``done()``; returns the stage's hash."""
        if self.from_stage and name.split(":")[0] == self.from_stage:
            self.forcing = True
        digest = _hash(name, inputs)
        previous = self.state.get(name, {})
        if not self.forcing and previous.get("hash") == digest and done():
            self.say(f"[{name}] unchanged, reusing ({previous.get('seconds', 0)}s last time)")
            return digest
        self.say(f"[{name}] running")
        self.current = digest
        t0 = time.monotonic()
        self.state.pop(name, None)
        self._save()
        try:
            summary = run()
        except PatentminerError as e:
            raise StageError(f"stage {name} failed: {e} (log: {self.log})") from e
        except Exception as e:
            with self.log.open("a") as fh:
                import traceback

                fh.write(traceback.format_exc())
            raise StageError(f"stage {name} failed: {type(e).__name__}: {str(e)[:300]} (log: {self.log})") from e
        seconds = round(time.monotonic() - t0, 1)
        self.state[name] = {"hash": digest, "seconds": seconds, "summary": summary, "finished": time.time()}
        self._save()
        self.ran.append(name)
        self.say(f"[{name}] done in {seconds}s")
        return digest

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        tmp.replace(self.state_path)

    # ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from patentminer.cypher.connection import Graph, Neo4jSettings
        from patentminer.cypher.importer import ImportOptions, graph_counts, import_graph
        from patentminer.cypher.mining import MineOptions, mine, resolve_strategy
        from patentminer.cypher.runtime import Neo4jRuntime
        from patentminer.etl.convert import EtlOptions, run_etl
        from patentminer.etl.synth import SynthConfig, synth

        job, work = self.job.spec, self.work
        started = time.monotonic()
        source = job.source.model_dump()
        if job.source.dir is not None:
            src = Path(job.source.dir)
            h_src = _hash(source, sorted((p.name, p.stat().st_size, p.stat().st_mtime) for p in src.iterdir()))
        else:
            src = work / "patentsview"
            cfg = SynthConfig(patents=int(job.source.synth_patents), seed=job.source.seed,
                              citations_per_patent=job.source.citations_per_patent,
                              cpc_per_patent=job.source.cpc_per_patent)
            h_src = self.stage("synth", source, lambda: (src / "g_patent.tsv").exists(),
                               lambda: synth(src, cfg)["rows"])
        csv_dir = work / "import"
        etl_opts = EtlOptions(keep_withdrawn=job.etl.keep_withdrawn, max_reject_rate=job.etl.max_reject_rate,
                              overwrite=True)
        h_etl = self.stage("etl", [h_src, job.etl.model_dump()], lambda: (csv_dir / "manifest.json").exists(),
                           lambda: _etl_summary(run_etl(src, csv_dir, etl_opts)))

        rt = None if os.environ.get("NEO4J_URI") else Neo4jRuntime()
        if rt is not None:
            rt.install()
            rt.start()
        settings = Neo4jSettings.resolve(rt) if rt else Neo4jSettings.resolve()

        def connect() -> Graph:
            return Graph(Neo4jSettings.resolve(rt) if rt else settings)  # an import restarts the server

        def graph_matches() -> bool:
            manifest = json.loads((csv_dir / "manifest.json").read_text())
            with Graph(settings) as g:
                return graph_counts(g) == manifest["graph"]

        h_imp = self.stage("import", [h_etl], graph_matches,
                           lambda: import_graph(csv_dir, ImportOptions(overwrite=True), runtime=rt)["counts"])
        strategies = list(job.mine.strategies)
        mine_opts = {k: v for k, v in job.mine.model_dump().items() if k != "strategies"}
        emb_dir, h_emb = work / "embeddings", ""
        if job.embed is not None and any(resolve_strategy(s)[0].takes == "knn" for s in strategies):
            from patentminer.training.embed import EmbedOptions, embed

            emb = job.embed

            def do_embed() -> Any:
                fresh = not self.resumable(emb_dir)
                with connect() as g:
                    info = embed(g, emb_dir, EmbedOptions(model=emb.model, template=mine_opts["template"],
                                                          batch_size=emb.batch_size,
                                                          max_seq_length=emb.max_seq_length, overwrite=fresh),
                                 echo=self.say)
                return {"patents": info["patents"], "model": info["model"], "texts_per_s": info["texts_per_s"]}

            h_emb = self.stage("embed", [h_imp, emb.model_dump(), mine_opts["template"]],
                               partial(_exists, emb_dir / "embed.json"), do_embed)
        mined: dict[str, tuple[Path, str]] = {}
        for strategy in strategies:
            target = work / "mined" / strategy.replace("@", "_")
            knn = resolve_strategy(strategy)[0].takes == "knn"
            extra = {"embeddings": str(emb_dir), "embedding_model": job.embed.model} if knn and job.embed else {}

            def do_mine(strategy: str = strategy, target: Path = target, extra: dict[str, Any] = extra) -> Any:
                fresh = not self.resumable(target)
                with connect() as g:
                    info = mine(g, target, MineOptions(strategy=strategy, overwrite=fresh, **mine_opts, **extra))
                summary = {"rows": info["rows"], "query": info["query"]["ref"], "skipped": info["anchors"]["skipped"],
                           "levels": info["levels"], "eval": {k: info["eval"][k] for k in ("kind", "queries",
                                                                                          "corpus", "heldout")}}
                if info.get("knn"):
                    summary["vetoed"] = info["knn"]["flagged_share"]
                return summary

            h = self.stage(f"mine:{strategy}", [h_imp, h_emb if knn else "", strategy, mine_opts],
                           partial(_exists, target / "dataset.json"), do_mine)
            mined[strategy] = (target, h)

        models: list[str] = list(job.evaluate.base_models)
        trained_hashes = []
        if job.train is not None:
            from patentminer.jobs import TrainConfig, check_data
            from patentminer.training.train import train, write_model_card

            settings_dump = job.train.model_dump()
            for strategy, (data, h_mine) in mined.items():
                out = work / "models" / strategy.replace("@", "_")
                tcfg = TrainConfig(data=str(data), output_dir=str(out), **settings_dump)

                def do_train(cfg: TrainConfig = tcfg, out: Path = out) -> Any:
                    import shutil

                    check_data(cfg)
                    resume = self.resumable(out) and (out / "checkpoints").exists()
                    if not resume:
                        shutil.rmtree(out, ignore_errors=True)
                        self.resumable(out)
                    summary = train(cfg, resume=resume, echo=self.say)
                    write_model_card(out, summary, None)
                    return {k: summary[k] for k in ("global_step", "train_loss", "seconds")}

                h = self.stage(f"train:{strategy}", [h_mine, settings_dump], partial(_exists, out / "training.json"),
                               do_train)
                trained_hashes.append(h)
                models.append(str(out))
        primary = next(iter(mined.values()))[0]
        report_dir = work / "report"

        def do_evaluate() -> Any:
            from patentminer.training.evaluate import evaluate

            report = evaluate(models, primary, report_dir, echo=self.say)
            return {m["model"]: {k: m["retrieval"].get(k) for k in ("mrr@10", "ndcg@10", "map@100")}
                    for m in report["models"]}

        if models:
            self.stage("evaluate", [list(mined[s][1] for s in mined), trained_hashes, models],
                       lambda: (report_dir / "metrics.json").exists(), do_evaluate)
        total = round(time.monotonic() - started, 1)
        self.state["_last_run"] = {"seconds": total, "ran": self.ran}
        self._save()
        write_reports(self, models)
        return {"work_dir": str(work), "ran": self.ran, "seconds": total,
                "report": str(report_dir / "report.html") if models else None, "stages": self.state}


def _etl_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    graph: dict[str, Any] = manifest["graph"]
    return graph


def write_reports(p: Pipeline, models: list[str]) -> None:
    """report.md and a self-contained report.html: provenance, metrics, plots, stage timings, commands."""
    report_dir = p.work / "report"
    metrics_path = report_dir / "metrics.json"
    if not metrics_path.exists():
        return
    metrics = json.loads(metrics_path.read_text())
    state = p.state
    etl = json.loads((p.work / "import" / "manifest.json").read_text())
    evaluated = (report_dir / "report.md").read_text().split("\n## Pipeline\n")[0]  # re-runs rewrite this part
    md = [evaluated.rstrip(), "", "## Pipeline", ""]
    md.append("| stage | seconds | what it made |")
    md.append("|---|---:|---|")
    for name, st in state.items():
        if name.startswith("_"):
            continue
        md.append(f"| {name} | {st.get('seconds')} | {readable(name, st.get('summary') or {})} |")
    c = etl["counts"]
    md += ["", f"Patents: {c['patents']['rows_read']:,} read, {c['patents']['written']:,} kept. Citations: "
           f"{c['citations']['rows_read']:,} read, {c['citations']['written']:,} kept "
           f"({c['citations']['dangling_cited']:,} dangling, {c['citations']['self_citation']:,} self, "
           f"{c['citations']['repeated_pair']:,} repeated dropped).", "", "## Reproduce", "", "```bash"]
    md.append(f"patentminer pipeline {p.job.path or 'JOB.toml'}" if p.job.path else "make demo")
    md += ["```", ""]
    text = "\n".join(md)
    (report_dir / "report.md").write_text(text)
    (report_dir / "report.html").write_text(_html(text, report_dir, metrics))


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def readable(stage: str, summary: dict[str, Any]) -> str:
    """A stage's summary as a short sentence for the report's table."""
    kind = stage.split(":")[0]
    if kind == "synth":
        return ", ".join(f"{k} {_n(v)}" for k, v in summary.items()) + " rows"
    if kind in ("etl", "import"):
        nodes, rels = summary.get("nodes", {}), summary.get("relationships", {})
        return (f"{_n(sum(nodes.values()))} nodes ({_n(nodes.get('Patent', 0))} patents), "
                + ", ".join(f"{_n(v)} {k}" for k, v in rels.items()))
    if kind == "embed":
        return f"{_n(summary.get('patents'))} patents with {summary.get('model')}, {summary.get('texts_per_s')} texts/s"
    if kind == "mine":
        rows, ev = summary.get("rows", {}), summary.get("eval", {})
        text = (f"{summary.get('query')}: rows " + " / ".join(f"{k} {_n(v)}" for k, v in rows.items())
                + f"; {ev.get('kind')} benchmark {_n(ev.get('queries'))} queries over {_n(ev.get('corpus'))} "
                f"patents, {_n(ev.get('heldout'))} held-out")
        if summary.get("vetoed"):
            text += "; vetoed " + ", ".join(f"{k} {v:.0%}" for k, v in summary["vetoed"].items() if v)
        return text
    if kind == "train":
        return f"{_n(summary.get('global_step'))} steps, loss {summary.get('train_loss', float('nan')):.3f}"
    if kind == "evaluate":
        return f"{len(summary)} models"
    return ""


def _html(markdown: str, report_dir: Path, metrics: dict[str, Any]) -> str:
    """A small self-contained HTML rendering (tables, headings, code, images inlined as base64)."""
    out = ["<!doctype html><meta charset='utf-8'><title>patentminer report</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
           "img{max-width:48%}</style>"]
    in_table = in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-:"):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{html.escape(c.strip('`'))}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1:line.rindex(")")]
            data = base64.b64encode((report_dir / name).read_bytes()).decode()
            out.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    out.append(f"<script type='application/json' id='metrics'>{html.escape(json.dumps(metrics))}</script>")
    return "\n".join(out) + "\n"
