"""The ``patentminer`` command line: options in, one library call, output out."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from patentminer import __version__
from patentminer.errors import PatentminerError


@contextmanager
def user_errors() -> Iterator[None]:
    """The one place library errors become ``Error: ...`` and a non-zero exit."""
    try:
        yield
    except PatentminerError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        click.echo("Interrupted; run the same command again to resume.", err=True)
        sys.exit(130)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=str, ensure_ascii=False))


class DefaultGroup(click.Group):
    """A group whose first argument, when not a subcommand, goes to ``default_command``.

    ``patentminer cypher "RETURN 1"`` runs a query; ``patentminer cypher list`` lists queries.
    """

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="patentminer")
def main() -> None:
    """patentminer: PatentsView -> Neo4j citation/CPC graph -> hard-negative training data.

    \b
    Example:
        patentminer neo4j start
        patentminer cypher "MATCH (p:Patent) RETURN count(p) AS patents"
    """


# --------------------------------------------------------------------------- neo4j
@main.group("neo4j")
def neo4j_group() -> None:
    """Install, start, stop and inspect the managed Neo4j Community server.

    \b
    Example:
        patentminer neo4j install && patentminer neo4j start && patentminer neo4j status --json
    """


@neo4j_group.command("install")
@click.option("--force", is_flag=True, help="Download again even when installed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def neo4j_install(force: bool, as_json: bool) -> None:
    """Assemble Neo4j Community from Maven Central into $PATENTMINER_HOME (default ~/.patentminer).

    \b
    Example:
        patentminer neo4j install
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        rt = Neo4jRuntime()
        if not as_json and not force and rt.installed_version() is None:
            click.echo(f"Resolving Neo4j {rt.version} from Maven Central (about 125 MB)...", err=True)
        info = rt.install(force=force)
    if as_json:
        echo_json(info)
    elif info["source"] == "existing":
        click.echo(f"Neo4j {info['version']} is already installed in {info['lib']} ({info['jars']} jars).")
    else:
        click.echo(f"Installed Neo4j {info['version']}: {info['jars']} jars in {info['lib']} "
                   f"from {info['source']} in {info['seconds']}s.")


@neo4j_group.command("start")
@click.option("--bolt-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Bolt port on 127.0.0.1; 0 picks a free one (kept across restarts while free).")
@click.option("--heap", default=None, help="JVM heap, like 4g (env PATENTMINER_NEO4J_HEAP; default: sized from "
              "the machine's memory and the store).")
@click.option("--pagecache", default=None, help="Page cache, like 8g (env PATENTMINER_NEO4J_PAGECACHE; default: "
              "sized likewise, at most the store's size).")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for Bolt.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def neo4j_start(bolt_port: int, heap: str | None, pagecache: str | None, timeout: float, as_json: bool) -> None:
    """Start the managed server on 127.0.0.1 and wait until Bolt answers.

    \b
    Example:
        patentminer neo4j start --heap 4g --pagecache 4g
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        status, started = Neo4jRuntime().start(bolt_port=bolt_port, heap=heap, pagecache=pagecache,
                                               timeout=timeout)
    if as_json:
        echo_json(status.to_json())
    elif started:
        click.echo(f"Neo4j {status.version} is running at {status.uri} (user {status.user}, "
                   f"password in {status.password_file}; heap {status.heap}, page cache {status.pagecache}).")
    else:
        click.echo(f"Neo4j is already running at {status.uri} (pid {status.pid}); nothing to do.")


@neo4j_group.command("stop")
def neo4j_stop() -> None:
    """Shut the managed server down cleanly (only the process it started).

    \b
    Example:
        patentminer neo4j stop
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        stopped = Neo4jRuntime().stop()
    click.echo("Neo4j stopped." if stopped else "Neo4j is not running; nothing to stop.")


@neo4j_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def neo4j_status(as_json: bool) -> None:
    """Say whether the managed server runs, where, and as whom.

    \b
    Example:
        patentminer neo4j status --json
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        status = Neo4jRuntime().status()
    if as_json:
        out = status.to_json()
        out.pop("pid", None)
        echo_json(out)
    elif status.running:
        click.echo(f"running: {status.uri} (Neo4j {status.version}, pid {status.pid}, heap {status.heap}, page cache "
                   f"{status.pagecache}, home {status.home})")
    else:
        click.echo(f"stopped (Neo4j {status.version or 'not installed'}, home {status.home})")


# --------------------------------------------------------------------------- cypher
@main.group("cypher", cls=DefaultGroup)
def cypher_group() -> None:
    """Run Cypher against the configured server, or browse the versioned query registry.

    \b
    Example:
        patentminer cypher "MATCH (p:Patent {id: $id}) RETURN p.title" --param id='"10000001"'
        patentminer cypher list
    """


@cypher_group.command("run")
@click.argument("query_or_file")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A query parameter; VALUE is JSON when it parses, else a string. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON lines.")
def cypher_run(query_or_file: str, params: tuple[str, ...], as_json: bool) -> None:
    """Run QUERY_OR_FILE (Cypher text, or a path to a .cypher file) and print the rows.

    \b
    Example:
        patentminer cypher "RETURN 1 AS one" --json
        patentminer cypher query.cypher --param limit=10
    """
    from patentminer.cypher.connection import Graph, parse_param

    with user_errors():
        query = query_text(query_or_file)
        values = dict(parse_param(p) for p in params)
        with Graph.connect() as graph:
            keys, rows = graph.run(query, values)
    if as_json:
        for row in rows:
            echo_json(dict(zip(keys, row, strict=True)))
    else:
        click.echo(format_table(keys, rows))


def query_text(arg: str) -> str:
    """Cypher text, or the content of the .cypher file ``arg`` names."""
    from patentminer.errors import InputError

    if arg.endswith(".cypher"):
        if not Path(arg).is_file():
            raise InputError(f"query file {arg} does not exist.")
        return Path(arg).read_text()
    try:
        if "\n" not in arg and Path(arg).is_file():
            return Path(arg).read_text()
    except OSError:  # text too long to be a path: it is a query
        pass
    return arg


def format_table(keys: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        text = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
        text = text.replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(k)] + [len(r[i]) for r in cells]) for i, k in enumerate(keys)]
    lines = [" | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)



def stderr_progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


# --------------------------------------------------------------------------- data
@main.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--patents", type=click.IntRange(min=1), required=True, help="Number of g_patent rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--citations-per-patent", type=float, default=11.0, show_default=True,
              help="Mean citations drawn per utility patent (about 15 citation rows per patent at full scale).")
@click.option("--cpc-per-patent", type=float, default=6.0, show_default=True,
              help="Mean CPC rows per patent (the real dump has about 6).")
@click.option("--layout", type=click.Choice(["current", "legacy"]), default="current", show_default=True,
              help="legacy puts patent_abstract inside g_patent, as older releases did.")
@click.option("--zip", "as_zip", is_flag=True, help="Write .tsv.zip files, as PatentsView serves them.")
@click.option("--clean", is_flag=True, help="Leave out the quirks (dirty rows, bad bytes, duplicates).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def synth_cmd(out_dir: Path, patents: int, seed: int, citations_per_patent: float, cpc_per_patent: float,
              layout: str, as_zip: bool, clean: bool, as_json: bool) -> None:
    """Write synthetic PatentsView granted-patent tables (with the real files' quirks) to OUT_DIR.

    \b
    Example:
        patentminer synth data/synth --patents 20000 --seed 7
    """
    from patentminer.etl.synth import SynthConfig, synth

    with user_errors():
        summary = synth(out_dir, SynthConfig(patents=patents, seed=seed, citations_per_patent=citations_per_patent,
                                             cpc_per_patent=cpc_per_patent, layout=layout, zip=as_zip,
                                             quirks=not clean),
                        progress=None if as_json else stderr_progress)
    if as_json:
        echo_json(summary)
    else:
        rows = ", ".join(f"{k} {v:,}" for k, v in summary["rows"].items())
        click.echo(f"Wrote {out_dir}: {rows} ({summary['topics']:,} CPC topics in {summary['subclasses']} "
                   "subclasses).")


@main.command("etl")
@click.argument("source_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--keep-withdrawn", is_flag=True, help="Keep withdrawn patents (left out by default).")
@click.option("--max-reject-rate", type=float, default=0.001, show_default=True,
              help="Fail when more than this fraction of rows cannot be parsed.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in OUT_DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def etl_cmd(source_dir: Path, out_dir: Path, keep_withdrawn: bool, max_reject_rate: float, overwrite: bool,
            as_json: bool) -> None:
    """Turn PatentsView tables in SOURCE_DIR into neo4j-admin import CSVs in OUT_DIR.

    Reads g_patent, g_patent_abstract, g_us_patent_citation, g_cpc_current and (optional)
    g_cpc_title / cpc_group, as .tsv or .tsv.zip. Writes node and relationship CSVs with
    header files, rejects.tsv and manifest.json (every count, source hashes).

    \b
    Example:
        patentminer etl data/patentsview data/import
    """
    from patentminer.etl.convert import EtlOptions, run_etl

    with user_errors():
        manifest = run_etl(source_dir, out_dir, EtlOptions(keep_withdrawn, max_reject_rate, overwrite),
                           progress=None if as_json else stderr_progress)
    if as_json:
        echo_json(manifest)
        return
    c = manifest["counts"]
    g = manifest["graph"]
    click.echo(f"ETL done in {manifest['timings_s']['total']:.1f}s -> {out_dir}")
    # Each line's dropped counts add up to read - kept.
    p = c["patents"]
    click.echo(f"  patents: {p['rows_read']:,} read, {p['written']:,} kept (dropped: {p['duplicate_id']:,} duplicate "
               f"ids, {p['withdrawn_dropped']:,} withdrawn, {p['rejected']:,} rejected)")
    ci = c["citations"]
    click.echo(f"  citations: {ci['rows_read']:,} read, {ci['written']:,} kept (dropped: {ci['dangling_citing']:,} "
               f"from and {ci['dangling_cited']:,} to patents outside the graph, {ci['self_citation']:,} self, "
               f"{ci['repeated_pair']:,} repeated, {ci['rejected']:,} rejected); {ci['bad_date']:,} kept without "
               "their bad or partial date")
    cp = c["cpc"]
    click.echo(f"  cpc: {cp['rows_read']:,} read, {cp['written']:,} kept (dropped: {cp['unknown_patent']:,} for "
               f"patents outside the graph, {cp['malformed_symbol']:,} not CPC symbols, "
               f"{cp['repeated_pair']:,} repeated, {cp['rejected']:,} rejected); nodes "
               + ", ".join(f"{k} {v:,}" for k, v in g["nodes"].items() if k != "Patent"))
    click.echo(f"  rejects: {manifest['rejects']['rows']:,} rows ({manifest['rejects']['rate']:.4%}) in "
               f"{out_dir / 'rejects.tsv'}")


@main.command("import")
@click.argument("out_dir", type=click.Path(exists=False, file_okay=False, path_type=Path))
@click.option("--database", default="neo4j", show_default=True, help="Target database (Community: neo4j).")
@click.option("--overwrite", is_flag=True, help="Replace a database that already holds data.")
@click.option("--method", type=click.Choice(["auto", "admin", "unwind"]), default="auto", show_default=True,
              help="admin: neo4j-admin bulk import (managed runtime); unwind: batched writes over Bolt (any "
                   "server); auto picks admin unless NEO4J_URI is set.")
@click.option("--print-command", type=click.Choice(["compose"]), default=None,
              help="Only print the docker compose import command for these files.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_cmd(out_dir: Path, database: str, overwrite: bool, method: str, print_command: str | None,
               as_json: bool) -> None:
    """Load an ETL output directory into Neo4j, apply the schema and check counts against manifest.json.

    \b
    Example:
        patentminer import data/import --overwrite
        patentminer import data/import --print-command compose
    """
    from patentminer.cypher.importer import ImportOptions, compose_command, import_graph, read_manifest

    with user_errors():
        if print_command:
            click.echo(compose_command(read_manifest(out_dir), database))
            return
        report = import_graph(out_dir, ImportOptions(database=database, overwrite=overwrite, method=method),
                              progress=None if as_json else stderr_progress)
    if as_json:
        echo_json(report)
        return
    n = report["counts"]
    click.echo(f"Imported {out_dir} with {report['method']} in {report['seconds']:.1f}s "
               f"({report.get('relationships_per_s') or 0:,} relationships/s); schema {report['schema']}.")
    click.echo("  nodes: " + ", ".join(f"{k} {v:,}" for k, v in n["nodes"].items()))
    click.echo("  relationships: " + ", ".join(f"{k} {v:,}" for k, v in n["relationships"].items()))
    click.echo("  counts match manifest.json" + (f"; {report['bad_entries']} bad entries reported by neo4j-admin"
                                                 if report.get("bad_entries") else ""))


@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True, help="Where the demo writes its data, models and report.")
@click.option("--patents", type=click.IntRange(min=100), default=20_000, show_default=True)
@click.option("--train-steps", type=click.IntRange(min=1), default=120, show_default=True,
              help="Fine-tuning steps per model (batch 16) on the CPU.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo_cmd(out: Path, patents: int, train_steps: int, seed: int, as_json: bool) -> None:
    """Run the whole job on built-in synthetic data and write a side-by-side report.

    synth -> etl -> import -> embed -> mine (citation-cpc, random, knn) -> fine-tune all-MiniLM-L6-v2 on
    each, same steps -> evaluate base vs the three arms. Finished stages are reused on a second run.

    \b
    Example:
        patentminer demo --patents 20000
    """
    from patentminer.demo import DemoOptions, run_demo

    with user_errors(), contextlib.redirect_stdout(sys.stderr):
        result = run_demo(out, DemoOptions(patents=patents, seed=seed, train_steps=train_steps),
                          echo=(lambda _m: None) if as_json else (lambda m: click.echo(m, err=True)))
    _print_pipeline(result, as_json)


@main.command("pipeline")
@click.argument("job_file", type=click.Path(path_type=Path))
@click.option("--from", "from_stage", type=click.Choice(["synth", "etl", "import", "mine", "train", "evaluate"]),
              default=None, help="Redo this stage and every stage after it.")
@click.option("--force", is_flag=True, help="Redo every stage.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def pipeline_cmd(job_file: Path, from_stage: str | None, force: bool, as_json: bool) -> None:
    """Run a job file end to end: source -> etl -> import -> mine -> train -> evaluate.

    Stages whose inputs did not change are skipped; a failed stage stops the run and names its log.

    \b
    Example:
        patentminer pipeline jobs/full.toml
        patentminer pipeline jobs/full.toml --from train
    """
    from patentminer.pipeline import Job, Pipeline

    with user_errors(), contextlib.redirect_stdout(sys.stderr):
        job = Job.load(job_file)
        result = Pipeline(job, (lambda _m: None) if as_json else (lambda m: click.echo(m, err=True)),
                          from_stage=from_stage, force=force).run()
    _print_pipeline(result, as_json)


def _print_pipeline(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(result)
        return
    click.echo(f"Done in {result['seconds']}s (ran: {', '.join(result['ran']) or 'nothing, all stages reused'}).")
    evaluation = result["stages"].get("evaluate", {}).get("summary") or {}
    if evaluation:
        from patentminer.training.evaluate import short_name

        click.echo(f"{'model':<32} {'MRR@10':>8} {'NDCG@10':>8} {'MAP@100':>8}")
        for model, m in evaluation.items():
            label = short_name(model)[-32:]
            click.echo(f"{label:<32} {m['mrr@10']:>8.4f} {m['ndcg@10']:>8.4f} {m['map@100']:>8.4f}")
    if result.get("report"):
        click.echo(f"Report: {result['report']} (and report.md beside it)")


# --------------------------------------------------------------------------- registry
@cypher_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON lines.")
def cypher_list(as_json: bool) -> None:
    """List the versioned queries (name, version, released or draft, description).

    \b
    Example:
        patentminer cypher list
    """
    from patentminer.cypher.registry import Registry, read_lock

    with user_errors():
        reg = Registry.load()
        lock = read_lock()
    for q in reg.queries:
        released = lock.get(q.ref) == q.sha256
        if as_json:
            echo_json({"ref": q.ref, "name": q.name, "version": q.version, "released": released,
                       "sha256": q.sha256, "params": [p.name for p in q.params], "description": q.description})
        else:
            click.echo(f"{q.ref:<26} {'released' if released else 'draft':<9} {q.description[:70]}")


@cypher_group.command("show")
@click.argument("ref")
def cypher_show(ref: str) -> None:
    """Print one query (NAME for the latest version, or NAME@vN) with its header.

    \b
    Example:
        patentminer cypher show citation-cpc@v2
    """
    from patentminer.cypher.registry import Registry

    with user_errors():
        q = Registry.load().get(ref)
    click.echo(q.path.read_text(encoding="utf-8"), nl=False)


# --------------------------------------------------------------------------- mining
@main.command("mine")
@click.option("--strategy", default="citation-cpc", show_default=True,
              help="citation-cpc, citation-of-citation, cpc-distance, random, cpc-siblings or knn (with "
                   "--embeddings); NAME@vN pins a version (latest by default).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory (train/dev/test.parquet, eval/, dataset.json).")
@click.option("--negatives", type=int, default=3, show_default=True, help="Hard negatives per anchor (K).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same graph, version, options and seed: "
              "byte-identical output.")
@click.option("--test-from", default=None, help="Anchors granted on or after this date (YYYY-MM-DD) form the test "
              "split; default: the newest 5% of anchors.")
@click.option("--dev-fraction", type=float, default=0.05, show_default=True,
              help="Seeded fraction of the non-test anchors held out as dev.")
@click.option("--limit-anchors", type=int, default=None, help="Mine a seeded sample of this many anchors.")
@click.option("--workers", type=int, default=2, show_default=True, help="Parallel Neo4j sessions.")
@click.option("--batch-size", type=int, default=500, show_default=True,
              help="Anchors per query (UNWIND $ids). Larger batches speed up cpc-siblings and cpc-distance "
                   "(each CPC branch is sorted once per batch) but use more server heap.")
@click.option("--level", default="subgroup", show_default=True,
              help="cpc-distance only: subgroup|group|subclass|class|section|random.")
@click.option("--template", default="{title} [SEP] {abstract}", show_default=True,
              help="Text of a patent, from {title} and {abstract}.")
@click.option("--eval-queries", type=int, default=5_000, show_default=True,
              help="Test queries in the benchmark: a seeded sample of the test anchors.")
@click.option("--corpus-size", type=int, default=100_000, show_default=True,
              help="Patents in the benchmark's corpus: the queries' relevant ones plus seeded distractors.")
@click.option("--heldout-size", type=int, default=10_000, show_default=True,
              help="Held-out patents (granted on or after the test date) for kNN CPC accuracy.")
@click.option("--embeddings", type=click.Path(file_okay=False), default=None,
              help="knn only: a `patentminer embed` output (the model's embeddings of every patent).")
@click.option("--embedding-model", default=None,
              help="knn only: refuse --embeddings made with any other model than this one.")
@click.option("--neighbours", type=int, default=50, show_default=True,
              help="knn only: candidates per anchor, its most similar earlier patents.")
@click.option("--margin", type=float, default=0.95, show_default=True,
              help="knn only: drop candidates more similar to the anchor than MARGIN x the positive.")
@click.option("--veto", type=click.Choice(["graph", "none"]), default="graph", show_default=True,
              help="knn only: graph drops candidates the citation graph vetoes; none keeps them (ablation).")
@click.option("--overwrite", is_flag=True, help="Replace a dataset mined with other settings.")
@click.option("--json", "as_json", is_flag=True, help="Print dataset.json.")
def mine_cmd(strategy: str, out_dir: Path, negatives: int, seed: int, test_from: str | None, dev_fraction: float,
             limit_anchors: int | None, workers: int, batch_size: int, level: str, template: str, eval_queries: int,
             corpus_size: int, heldout_size: int, embeddings: str | None, embedding_model: str | None,
             neighbours: int, margin: float, veto: str, overwrite: bool, as_json: bool) -> None:
    """Mine (anchor, positive, hard negatives) rows and a held-out retrieval benchmark from the graph.

    An interrupted run (Ctrl-C, Neo4j restarted) continues where it stopped when run again.

    \b
    Example:
        patentminer mine --strategy citation-cpc --out runs/hard --negatives 3 --seed 1
        patentminer mine --strategy cpc-distance --level group --out runs/group --limit-anchors 5000
        patentminer mine --strategy citation-cpc@v1 --out runs/old --seed 1    # re-mine with a pinned version
        patentminer mine --strategy knn --embeddings runs/emb --out runs/knn --margin 0.95
    """
    from tqdm import tqdm

    from patentminer.cypher.connection import Graph
    from patentminer.cypher.mining import MineOptions, mine

    options = MineOptions(strategy=strategy, negatives=negatives, seed=seed, test_from=test_from,
                          dev_fraction=dev_fraction, limit_anchors=limit_anchors, workers=workers,
                          batch_size=batch_size, level=level, template=template, eval_queries=eval_queries,
                          corpus_size=corpus_size, heldout_size=heldout_size, embeddings=embeddings,
                          embedding_model=embedding_model, neighbours=neighbours, margin=margin, veto=veto,
                          overwrite=overwrite)
    with user_errors():
        options.validate()
    # On stderr with --json too: stdout stays the JSON, and a long run's log shows how far it got.
    bar = tqdm(total=0, unit="batch", desc=f"mining {strategy}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    def stage(what: str) -> None:
        bar.set_description_str(what)

    with user_errors():
        try:
            with Graph.connect() as graph:
                info = mine(graph, out_dir, options, progress=progress, stage=stage)
        finally:
            bar.close()
    if as_json:
        echo_json(info)
        return
    rows, anchors = info["rows"], info["anchors"]
    click.echo(f"Mined {info['query']['ref']} (seed {info['seed']}) into {out_dir} "
               f"in {info['timings_s']['total']:.1f}s")
    click.echo(f"  rows: train {rows['train']:,}, dev {rows['dev']:,}, test {rows['test']:,} "
               f"(test from {info['test_from']}); negatives by level: {info['levels']}")
    click.echo(f"  anchors: {anchors['eligible']:,} eligible, {anchors['mined']:,} mined, skipped "
               + ", ".join(f"{v:,} {k}" for k, v in anchors["skipped"].items()))
    if info.get("knn"):
        k = info["knn"]
        click.echo(f"  knn: {k['candidates']:,} candidates from {k['model']}; the graph flags "
                   + ", ".join(f"{r} {s:.1%}" for r, s in k["flagged_share"].items())
                   + f" (veto {k['veto']}); the margin removed {k['removed_by_margin']:,}")
    ev = info["eval"]
    click.echo(f"  eval ({ev['kind']} retrieval): {ev['queries']:,} queries, {ev['corpus']:,} corpus, "
               f"{ev['qrels']:,} qrels; {ev['heldout']:,} held-out patents for kNN"
               + (f"; {info['anchors_per_s']:,} anchors/s" if info.get("anchors_per_s") else ""))


@main.command("embed")
@click.option("--model", required=True, help="A hub name, a local sentence-transformers directory, or "
              "packaged:all-MiniLM-L6-v2.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory (embeddings.npy, patents.parquet, embed.json).")
@click.option("--template", default="{title} [SEP] {abstract}", show_default=True,
              help="Text of a patent, from {title} and {abstract} (use the one you mine with).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Texts per forward pass.")
@click.option("--max-seq-length", type=int, default=None, help="Tokens per text (default: the model's own).")
@click.option("--workers", type=int, default=2, show_default=True, help="Parallel Neo4j sessions reading texts.")
@click.option("--overwrite", is_flag=True, help="Replace embeddings of another model, template or graph.")
@click.option("--json", "as_json", is_flag=True, help="Print embed.json.")
def embed_cmd(model: str, out_dir: Path, template: str, batch_size: int, max_seq_length: int | None, workers: int,
              overwrite: bool, as_json: bool) -> None:
    """Encode every patent in the graph with MODEL (float16, memory-mappable), for `mine --strategy knn`.

    Uses the model's document prompt where it has one and the GPU when there is one; an interrupted
    run continues where it stopped when run again.

    \b
    Example:
        patentminer embed --model packaged:all-MiniLM-L6-v2 --out runs/emb
        patentminer mine --strategy knn --embeddings runs/emb --out runs/knn
    """
    from tqdm import tqdm

    from patentminer.cypher.connection import Graph
    from patentminer.training.embed import EmbedOptions, embed

    options = EmbedOptions(model=model, template=template, batch_size=batch_size, max_seq_length=max_seq_length,
                           workers=workers, overwrite=overwrite)
    with user_errors():
        options.validate()
    bar = tqdm(total=0, unit="patent", desc="embedding", file=sys.stderr)  # stderr, with --json too

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with user_errors(), contextlib.redirect_stdout(sys.stderr):
        try:
            with Graph.connect() as graph:
                info = embed(graph, out_dir, options, progress=progress,
                             echo=None if as_json else (lambda m: click.echo(m, err=True)))
        finally:
            bar.close()
    if as_json:
        echo_json(info)
        return
    click.echo(f"Embedded {info['patents']:,} patents with {info['model']} ({info['dim']} dims, {info['device']}"
               + (f", {info['texts_per_s']:,} texts/s" if info.get("texts_per_s") else "")
               + f") into {out_dir} in {info['seconds']}s")


# --------------------------------------------------------------------------- training
@main.command("train")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint after an interruption.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a job-file key. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
def train_cmd(config: Path, resume: bool, sets: tuple[str, ...], as_json: bool) -> None:
    """Fine-tune a sentence-transformers model on a mined dataset, as a TOML job file says.

    Multi-GPU: `torchrun --nproc_per_node 4 -m patentminer.cli train job.toml`
    (or `accelerate launch -m patentminer.cli train job.toml`).

    \b
    Example:
        patentminer train jobs/hard.toml --set batch_size=64 --set epochs=2
    """
    from patentminer.jobs import load_train_job, parse_set
    from patentminer.training.evaluate import evaluate
    from patentminer.training.train import is_main_process, train, write_model_card

    main_rank = is_main_process()
    echo = (lambda _m: None) if as_json or not main_rank else (lambda m: click.echo(m, err=True))
    # The trainer prints its log dicts to stdout; keep stdout for our summary (and clean JSON).
    with user_errors(), contextlib.redirect_stdout(sys.stderr):
        job = load_train_job(config, parse_set(sets))
        summary = train(job, resume=resume, echo=echo)
        if not main_rank:
            return
        if job.test_eval:
            test = evaluate([job.output_dir], Path(job.data), Path(job.output_dir) / "eval", echo=echo)
            summary["test"] = test["models"][0]["retrieval"]
            summary["test_knn_cpc_subclass_accuracy"] = test["models"][0]["knn_cpc_subclass_accuracy"]
            write_model_card(Path(job.output_dir), summary, summary["test"], test["dataset"]["benchmark"])
        else:
            summary["test"] = summary["test_knn_cpc_subclass_accuracy"] = None
            write_model_card(Path(job.output_dir), summary, None)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"Trained {summary['base_model']} -> {job.output_dir} ({summary['global_step']} steps, "
               f"{summary['seconds']}s, {summary['device']}/{summary['precision']}, loss {summary['train_loss']:.4f})")
    if not job.test_eval:
        click.echo(f"  test: not evaluated (test_eval = false); run `patentminer evaluate {job.output_dir} "
                   f"--data {job.data}`")
        click.echo(f"  card: {job.output_dir}/MODEL_CARD.md")
        return
    t = summary["test"]
    knn = summary["test_knn_cpc_subclass_accuracy"]
    knn_text = (f"kNN CPC subclass accuracy {knn:.4f}" if knn is not None
                else "no kNN CPC accuracy (too few held-out patents)")
    if t:
        click.echo(f"  test: MRR@10 {t['mrr@10']:.4f}, NDCG@10 {t['ndcg@10']:.4f}, accuracy@1 {t['accuracy@1']:.4f}; "
                   f"{knn_text}")
    else:
        click.echo(f"  test: no retrieval metrics (no test query has a relevant patent in {job.data}); {knn_text}")
    click.echo(f"  card: {job.output_dir}/MODEL_CARD.md")


@main.command("evaluate")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", type=click.Path(path_type=Path), required=True, help="A `patentminer mine` output.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report directory (default: DATA/report).")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json.")
def evaluate_cmd(models: tuple[str, ...], data: Path, out_dir: Path | None, as_json: bool) -> None:
    """Compare MODELs on DATA's held-out benchmark; writes report.md, metrics.json, plots.

    The benchmark is the one `patentminer mine` wrote: bounded and seeded (citation retrieval, or CPC
    retrieval for data without citations), plus kNN CPC-subclass accuracy on held-out patents.
    A MODEL is a local directory, a hub name, or packaged:all-MiniLM-L6-v2.

    \b
    Example:
        patentminer evaluate packaged:all-MiniLM-L6-v2 models/random models/hard --data runs/hard
    """
    from patentminer.training.evaluate import HEADLINE, evaluate, short_name

    out = out_dir or data / "report"
    with user_errors(), contextlib.redirect_stdout(sys.stderr):
        # Stages and encoding bars go to stderr with --json too: stdout holds only the JSON, and a
        # full-size run's log still shows how far it got.
        report = evaluate(list(models), data, out, echo=lambda m: click.echo(m, err=True), progress=True)
    if as_json:
        echo_json(report)
        return
    click.echo(f"Benchmark: {report['dataset']['benchmark']}")
    columns = [k for k in HEADLINE if any(r["retrieval"] for r in report["models"])] + ["knn"]
    click.echo(f"{'model':<40} " + " ".join(f"{k:>11}" for k in columns))
    for r in report["models"]:
        values = [r["retrieval"].get(k) for k in columns[:-1]] + [r["knn_cpc_subclass_accuracy"]]
        click.echo(f"{short_name(r['model'])[-40:]:<40} "
                   + " ".join(f"{v:>11.4f}" if v is not None else f"{'-':>11}" for v in values))
    if not any(r["retrieval"] for r in report["models"]):
        click.echo("No retrieval metrics: no test query has a relevant patent in this benchmark.")
    click.echo(f"Report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
