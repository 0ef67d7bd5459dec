"""Loading an ETL output directory into Neo4j and checking the result against its manifest.

Two ways in:
- ``admin`` (the managed runtime): ``neo4j-admin database import full``, the fast path;
  the server is stopped for the import and started again after it.
- ``unwind`` (any server, e.g. ``NEO4J_URI``): batched ``UNWIND $rows`` writes through the driver.
Either way the versioned schema file is applied and node and relationship counts must
equal ``manifest.json``'s, or the import fails loudly.

Example::

    report = import_graph(Path("data/import"), ImportOptions(overwrite=True))
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from patentminer.cypher.connection import Graph, Neo4jSettings
from patentminer.cypher.registry import Registry
from patentminer.cypher.runtime import Neo4jRuntime
from patentminer.errors import ConfigError, GraphError, InputError, OutputExistsError

Progress = Callable[[str], None]

#: The only labels and relationship types patentminer writes; queries below are fixed text per entry.
NODE_LABELS = ("Patent", "CPCSection", "CPCClass", "CPCSubclass", "CPCGroup", "CPCSubgroup")
REL_TYPES = ("CITES", "CLASSIFIED_AS", "PART_OF")

_UNWIND_NODES = {
    "Patent": "UNWIND $rows AS r CREATE (:Patent {id: r.id, title: r.title, abstract: r.abstract, "
              "date: CASE WHEN r.date IS NULL THEN null ELSE date(r.date) END, year: toInteger(r.year), "
              "type: r.type, kind: r.kind, num_claims: toInteger(r.num_claims), rk: toInteger(r.rk)})",
    "CPCSection": "UNWIND $rows AS r CREATE (:CPCSection {code: r.code})",
    "CPCClass": "UNWIND $rows AS r CREATE (:CPCClass {code: r.code, title: r.title})",
    "CPCSubclass": "UNWIND $rows AS r CREATE (:CPCSubclass {code: r.code, title: r.title})",
    "CPCGroup": "UNWIND $rows AS r CREATE (:CPCGroup {code: r.code, title: r.title})",
    "CPCSubgroup": "UNWIND $rows AS r CREATE (:CPCSubgroup {code: r.code, sg: toInteger(r.sg), title: r.title})",
}
_UNWIND_RELS = {
    "cites.csv": "UNWIND $rows AS r MATCH (a:Patent {id: r.s}) MATCH (b:Patent {id: r.e}) "
                 "CREATE (a)-[:CITES {sequence: toInteger(r.seq), category: r.category, "
                 "date: CASE WHEN r.date IS NULL THEN null ELSE date(r.date) END}]->(b)",
    "classified_as.csv": "UNWIND $rows AS r MATCH (a:Patent {id: r.s}) MATCH (b:CPCSubgroup {code: r.e}) "
                         "CREATE (a)-[:CLASSIFIED_AS {rk: toInteger(r.rk), sg: toInteger(r.sg), b: toInteger(r.b), "
                         "sequence: toInteger(r.seq), type: r.type}]->(b)",
    "part_of_class.csv": "UNWIND $rows AS r MATCH (a:CPCClass {code: r.s}) MATCH (b:CPCSection {code: r.e}) "
                         "CREATE (a)-[:PART_OF]->(b)",
    "part_of_subclass.csv": "UNWIND $rows AS r MATCH (a:CPCSubclass {code: r.s}) MATCH (b:CPCClass {code: r.e}) "
                            "CREATE (a)-[:PART_OF]->(b)",
    "part_of_group.csv": "UNWIND $rows AS r MATCH (a:CPCGroup {code: r.s}) MATCH (b:CPCSubclass {code: r.e}) "
                         "CREATE (a)-[:PART_OF]->(b)",
    "part_of_subgroup.csv": "UNWIND $rows AS r MATCH (a:CPCSubgroup {code: r.s}) MATCH (b:CPCGroup {code: r.e}) "
                            "CREATE (a)-[:PART_OF]->(b)",
}
_REL_COLUMNS = {"cites.csv": ["s", "e", "seq", "category", "date"],
                "classified_as.csv": ["s", "e", "rk", "sg", "b", "seq", "type"]}


@dataclass(frozen=True)
class ImportOptions:
    database: str = "neo4j"
    overwrite: bool = False
    method: str = "auto"  # auto | admin | unwind
    batch_size: int = 10_000

    def validate(self) -> None:
        if self.method not in ("auto", "admin", "unwind"):
            raise ConfigError(f"--method {self.method!r} is not valid; use auto, admin or unwind.")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1.")


def read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "manifest.json"
    if not path.exists():
        raise InputError(f"{out_dir} has no manifest.json; run `patentminer etl SOURCE_DIR {out_dir}` first "
                         "(an interrupted ETL leaves none).")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def admin_import_args(manifest: dict[str, Any], base: str, database: str) -> list[str]:
    """``database import full`` arguments for the files named in the manifest, under ``base``."""
    args = ["database", "import", "full", database, "--overwrite-destination=true", "--multiline-fields=true",
            "--skip-bad-relationships=true", "--bad-tolerance=1000000", "--id-type=string"]
    for label, files in manifest["files"]["nodes"].items():
        if label not in NODE_LABELS:
            raise InputError(f"manifest.json names unknown label {label!r}.")
        args.append(f"--nodes={label}=" + ",".join(f"{base}/{f}" for f in files))
    for rel, groups in manifest["files"]["relationships"].items():
        if rel not in REL_TYPES:
            raise InputError(f"manifest.json names unknown relationship type {rel!r}.")
        for files in groups:
            args.append(f"--relationships={rel}=" + ",".join(f"{base}/{f}" for f in files))
    return args


def compose_command(manifest: dict[str, Any], database: str = "neo4j") -> str:
    """The docker compose command that imports the files mounted at /import."""
    args = admin_import_args(manifest, "/import", database)
    return "docker compose stop neo4j && docker compose run --rm neo4j neo4j-admin " + " ".join(
        shlex.quote(a) for a in args) + " && docker compose start neo4j"


# Fixed query text per label and type (labels cannot be parameters): Neo4j answers these from its count
# store in constant time, where a label or type test in WHERE would scan every node or relationship.
_COUNT_NODES = {label: f"MATCH (n:{label}) RETURN count(n) AS c" for label in NODE_LABELS}
_COUNT_RELS = {t: f"MATCH ()-[r:{t}]->() RETURN count(r) AS c" for t in REL_TYPES}


def graph_counts(graph: Graph) -> dict[str, dict[str, int]]:
    nodes = {label: graph.count(query) for label, query in _COUNT_NODES.items()}
    rels = {t: graph.count(query) for t, query in _COUNT_RELS.items()}
    return {"nodes": nodes, "relationships": rels}


def apply_schema(graph: Graph) -> str:
    query = Registry.load().latest("schema")
    for statement in query.statements():
        graph.write(statement)
    graph.write("CALL db.awaitIndexes(600)")
    return query.ref


def clear_database(graph: Graph) -> None:
    graph.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")


def import_graph(out_dir: Path, options: ImportOptions, progress: Progress | None = None,
                 runtime: Neo4jRuntime | None = None) -> dict[str, Any]:
    """Load ``out_dir`` (an ETL output) into the configured Neo4j; returns a report.

    Raises OutputExistsError when the database holds data and ``overwrite`` is off,
    GraphError when the counts after import differ from the manifest.
    """
    options.validate()
    say = progress or (lambda _m: None)
    out_dir = out_dir.resolve()  # neo4j-admin runs in the server's directory
    manifest = read_manifest(out_dir)
    external = bool(os.environ.get("NEO4J_URI")) and runtime is None
    method = options.method
    if method == "auto":
        method = "unwind" if external else "admin"
    if method == "admin" and external:
        raise ConfigError("--method admin needs the managed runtime; with NEO4J_URI set use --method unwind, or "
                          "run `patentminer import OUT_DIR --print-command compose` for a Docker setup.")
    if options.database != "neo4j":
        raise ConfigError(f"--database {options.database!r}: Neo4j Community serves one user database, 'neo4j'; "
                          "import replaces it.")
    started = time.monotonic()
    rt = runtime or (None if external else Neo4jRuntime())
    if rt is not None and not rt.status().running:
        rt.start()
    settings = Neo4jSettings.resolve(rt) if rt is not None else Neo4jSettings.resolve()
    with Graph(settings) as graph:
        existing = graph.count("MATCH (n) RETURN count(n) AS c")
        if existing and not options.overwrite:
            raise OutputExistsError(f"database {options.database!r} already holds {existing:,} nodes; pass "
                                    "--overwrite to replace them.")
    report: dict[str, Any] = {"method": method, "out_dir": str(out_dir)}
    if method == "admin":
        assert rt is not None
        report.update(_admin_import(rt, out_dir, manifest, options, say))
        rt.start()
    else:
        with Graph(settings) as graph:
            if existing:
                say(f"clearing {existing:,} nodes")
                clear_database(graph)
            report.update(_unwind_import(graph, out_dir, manifest, options, say))
            say("refreshing index statistics")
            report["replanned"] = refresh_statistics(graph)
    with Graph(Neo4jSettings.resolve(rt) if rt is not None else settings) as graph:
        t0 = time.monotonic()
        report["schema"] = apply_schema(graph)
        report["schema_seconds"] = round(time.monotonic() - t0, 2)
        counts = graph_counts(graph)
    report["counts"] = counts
    report["seconds"] = round(time.monotonic() - started, 2)
    expected = manifest["graph"]
    diffs = [f"{kind[:-1]} {name}: graph {counts[kind].get(name, 0):,} vs manifest {n:,}"
             for kind in ("nodes", "relationships") for name, n in expected[kind].items()
             if counts[kind].get(name, 0) != n]
    report["matches_manifest"] = not diffs
    (out_dir / "import-report.json").write_text(json.dumps(report, indent=2))
    if diffs:
        bad = report.get("bad_entries")
        hint = f"; neo4j-admin reported {bad} bad entries in {out_dir / 'import.report'}" if bad else ""
        raise GraphError("imported graph does not match manifest.json: " + "; ".join(diffs) + hint)
    return report


def refresh_statistics(graph: Graph, timeout_s: int = 600) -> bool:
    """Resample the indexes and clear the query caches after bulk writes through Bolt; False when the
    server refuses (a user without the admin privilege).

    Indexes that exist before the rows arrive keep the samples they had then (empty, or another graph's after
    a re-import), so the planner can pick a scan where v5 of citation-cpc needs the (sg, b) index seek.
    """
    try:
        graph.run("CALL db.prepareForReplanning($timeout)", {"timeout": timeout_s})
    except GraphError:
        return False
    return True


def _admin_import(rt: Neo4jRuntime, out_dir: Path, manifest: dict[str, Any], options: ImportOptions,
                  say: Progress) -> dict[str, Any]:
    say("stopping Neo4j for the import")
    rt.stop()
    report_file = out_dir / "import.report"
    args = [*admin_import_args(manifest, str(out_dir.resolve()), options.database), f"--report-file={report_file}"]
    say("neo4j-admin database import full")
    t0 = time.monotonic()
    proc = rt.admin(*args)
    seconds = time.monotonic() - t0
    (out_dir / "import.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        rt.start()
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        causes = [ln for ln in lines if ln.startswith(("Caused by", "ERROR")) or "Exception:" in ln]
        raise GraphError(f"neo4j-admin import failed: {(causes or lines or ['no output'])[-1][:300]} (full log: "
                         f"{out_dir / 'import.log'})")
    bad = 0
    if report_file.exists():
        bad = sum(1 for line in report_file.read_text(errors="replace").splitlines() if line.strip())
    rels = sum(manifest["graph"]["relationships"].values())
    nodes = sum(manifest["graph"]["nodes"].values())
    return {"import_seconds": round(seconds, 2), "bad_entries": bad,
            "relationships_per_s": round(rels / seconds) if seconds else None,
            "nodes_per_s": round(nodes / seconds) if seconds else None}


def _batches(path: Path, columns: list[str], batch_size: int) -> Any:
    lf = pl.scan_csv(path, has_header=False, new_columns=columns, schema={c: pl.String for c in columns},
                     quote_char='"')
    yield from lf.collect_batches(chunk_size=batch_size)


def _unwind_import(graph: Graph, out_dir: Path, manifest: dict[str, Any], options: ImportOptions,
                   say: Progress) -> dict[str, Any]:
    t0 = time.monotonic()
    apply_schema(graph)  # MATCH by id/code below needs the indexes
    for label, (header, data) in manifest["files"]["nodes"].items():
        columns = [c.split(":")[0] for c in (out_dir / header).read_text().strip().split(",")]
        say(f"loading {label} nodes")
        for batch in _batches(out_dir / data, columns, options.batch_size):
            graph.write(_UNWIND_NODES[label], {"rows": batch.to_dicts()})
    t_nodes = time.monotonic() - t0
    t1 = time.monotonic()
    for rel, groups in manifest["files"]["relationships"].items():
        for _header, data in groups:
            say(f"loading {rel} from {data}")
            columns = _REL_COLUMNS.get(data, ["s", "e"])
            for batch in _batches(out_dir / data, columns, options.batch_size):
                graph.write(_UNWIND_RELS[data], {"rows": batch.to_dicts()})
    t_rels = time.monotonic() - t1
    rels = sum(manifest["graph"]["relationships"].values())
    return {"import_seconds": round(t_nodes + t_rels, 2), "relationships_per_s": round(rels / t_rels) if t_rels
            else None, "nodes_per_s": round(sum(manifest["graph"]["nodes"].values()) / t_nodes) if t_nodes else None}
