"""``patentminer demo``: synthetic PatentsView data -> import CSVs -> Neo4j -> mined training sets.

Stages whose output is complete are reused, so a second run is quick. Training and the
evaluation report join this chain as those parts land.

Example::

    result = run_demo(Path("demo-output"), DemoOptions(patents=20_000))
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patentminer.cypher.connection import Graph, Neo4jSettings
from patentminer.cypher.importer import ImportOptions, graph_counts, import_graph
from patentminer.cypher.mining import MineOptions, mine
from patentminer.cypher.runtime import Neo4jRuntime
from patentminer.etl.convert import EtlOptions, run_etl
from patentminer.etl.synth import SynthConfig, synth

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    patents: int = 20_000
    seed: int = 7


def _server(echo: Echo) -> Neo4jRuntime | None:
    if os.environ.get("NEO4J_URI"):
        echo(f"Neo4j: using {os.environ['NEO4J_URI']}")
        return None
    rt = Neo4jRuntime()
    rt.install()
    status, started = rt.start()
    echo(f"Neo4j {status.version} {'started' if started else 'running'} at {status.uri}")
    return rt


def run_demo(out: Path, options: DemoOptions, echo: Echo) -> dict[str, Any]:
    """Run the demo chain under ``out``; returns a summary (also written to ``out/demo.json``)."""
    t_all = time.monotonic()
    timings: dict[str, float] = {}
    src, csvs = out / "patentsview", out / "import"
    done = src / "synth.json"
    config = SynthConfig(patents=options.patents, seed=options.seed)

    t0 = time.monotonic()
    if done.exists() and json.loads(done.read_text()).get("config") == asdict(config):
        echo(f"[1/5] synth: reusing {src}")
    else:
        echo(f"[1/5] synth: {options.patents:,} PatentsView-format patents -> {src}")
        done.unlink(missing_ok=True)
        summary = synth(src, config)
        done.write_text(json.dumps(summary, indent=2))
    timings["synth"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    manifest_path = csvs / "manifest.json"
    if manifest_path.exists() and manifest_path.stat().st_mtime >= done.stat().st_mtime:
        echo(f"[2/5] etl: reusing {csvs}")
        manifest = json.loads(manifest_path.read_text())
    else:
        echo(f"[2/5] etl: {src} -> {csvs}")
        manifest = run_etl(src, csvs, EtlOptions(overwrite=True))
    timings["etl"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    rt = _server(echo)
    settings = Neo4jSettings.resolve(rt) if rt else Neo4jSettings.resolve()
    with Graph(settings) as graph:
        current = graph_counts(graph)
    if current == manifest["graph"]:
        echo("[3/5] import: the graph already matches manifest.json; reusing it")
    else:
        echo("[3/5] import: neo4j-admin database import full, schema, count check")
        import_graph(csvs, ImportOptions(overwrite=True), runtime=rt)
    timings["import"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    mined: dict[str, Any] = {}
    with Graph(Neo4jSettings.resolve(rt) if rt else settings) as graph:
        for strategy in ("citation-cpc", "random"):
            target = out / "mined" / strategy
            echo(f"[4/5] mine {strategy} -> {target}")
            info = mine(graph, target, MineOptions(strategy=strategy, negatives=3, seed=options.seed,
                                                   corpus_size=5000))
            mined[strategy] = {"rows": info["rows"], "levels": info["levels"], "skipped": info["anchors"]["skipped"],
                               "eval": info["eval"], "query": info["query"]["ref"]}
    timings["mine"] = round(time.monotonic() - t0, 1)

    echo("[5/5] query the graph")
    with Graph(Neo4jSettings.resolve(rt) if rt else settings) as graph:
        counts = graph_counts(graph)
        top = graph.read(
            "MATCH (p:Patent)<-[:CITES]-(c:Patent) WITH p, count(c) AS cited_by "
            "ORDER BY cited_by DESC, p.id LIMIT 3 "
            "MATCH (p)-[:CLASSIFIED_AS {sequence: 0}]->(s:CPCSubgroup) "
            "RETURN p.id AS id, p.title AS title, cited_by, s.code AS cpc")
        same = graph.read(
            "MATCH (a:Patent)-[:CITES]->(b:Patent) WITH a, b LIMIT 20000 "
            "WITH a, b, EXISTS { MATCH (a)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(s) "
            "MATCH (b)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(s) } AS shared "
            "RETURN avg(CASE WHEN shared THEN 1.0 ELSE 0.0 END) AS share")
    timings["total"] = round(time.monotonic() - t_all, 1)
    result = {"out": str(out), "counts": counts, "etl": manifest["counts"], "mined": mined, "top_cited": top,
              "citations_within_a_cpc_subclass": round(same[0]["share"] or 0.0, 3), "timings_s": timings}
    (out / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    return result
