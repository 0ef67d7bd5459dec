"""Import benchmark: neo4j-admin bulk import vs batched UNWIND through the driver, same CSVs, same run.

Runs on its own managed server (a temporary PATENTMINER_HOME), so the graph you work with is untouched.

    .venv/bin/patentminer synth /tmp/s100k --patents 100000 && .venv/bin/patentminer etl /tmp/s100k /tmp/i100k
    .venv/bin/python benchmarks/import_load.py /tmp/i100k
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from patentminer.cypher.importer import ImportOptions, import_graph
from patentminer.cypher.runtime import Neo4jRuntime, patentminer_home


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("etl_dir", type=Path)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    install = Neo4jRuntime(root=patentminer_home())
    install.install()
    os.environ["NEO4J_HOME"] = str(install.install_dir)
    rt = Neo4jRuntime(root=Path(tempfile.mkdtemp(prefix="bench-import-")))
    rt.start()
    try:
        admin = import_graph(args.etl_dir, ImportOptions(overwrite=True, method="admin"), runtime=rt)
        os.environ["NEO4J_URI"] = rt.status().uri or ""
        os.environ["NEO4J_PASSWORD"] = rt.password()
        unwind = import_graph(args.etl_dir, ImportOptions(overwrite=True, method="unwind",
                                                           batch_size=args.batch_size))
    finally:
        rt.stop()
    rels = sum(admin["counts"]["relationships"].values())
    report = {"relationships": rels, "nodes": sum(admin["counts"]["nodes"].values()),
              "admin": {k: admin[k] for k in ("import_seconds", "relationships_per_s", "seconds")},
              "unwind": {k: unwind[k] for k in ("import_seconds", "relationships_per_s", "seconds")}}
    report["admin_over_unwind_rels_per_s"] = round(
        (admin["relationships_per_s"] or 0) / max(1, unwind["relationships_per_s"] or 1), 1)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['nodes']:,} nodes, {rels:,} relationships")
    for name in ("admin", "unwind"):
        r = report[name]
        print(f"{name:<7} load {r['import_seconds']:>7.1f}s  {r['relationships_per_s'] or 0:>10,} rels/s  "
              f"(with schema, restart and count check: {r['seconds']:.1f}s)")
    print(f"admin / unwind relationships/s: x{report['admin_over_unwind_rels_per_s']}")


if __name__ == "__main__":
    main()
