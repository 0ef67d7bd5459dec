"""ETL benchmark: our streaming ETL vs the PatentCL pandas handler vs a bare Polars read+write.

Each contender runs in its own subprocess on the same synthetic PatentsView files, so
wall time and peak RSS (ru_maxrss) are its own, each after the input has been read once.
Prints a table and the ratios.

    .venv/bin/python benchmarks/etl.py --patents 1000000          # generates data first
    .venv/bin/python benchmarks/etl.py --source /tmp/syn1m --json
    .venv/bin/python benchmarks/etl.py --source /tmp/syn1m --cpus 1   # every contender on one core
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TABLES = ("g_patent", "g_patent_abstract", "g_us_patent_citation", "g_cpc_current")


def run_ours(source: Path, out: Path) -> None:
    from patentminer.etl.convert import EtlOptions, run_etl

    run_etl(source, out, EtlOptions(overwrite=True))


def run_pandas(source: Path, out: Path) -> None:
    """The PatentCL patent_handler approach: chunked read_csv, concat every chunk, rename, to_csv.

    Its read_csv call as it is (pandas infers the column types, chunk by chunk); encoding_errors and
    on_bad_lines are the least needed for pandas to get through the quirky files at all. (Until
    2026-11-28 this baseline read every column as a string, which PatentCL does not: at 1M patents
    2-3% faster and 17% less memory than its own call; benchmarks/RESULTS.md.)
    """
    import pandas as pd

    def read(name: str) -> pd.DataFrame:
        chunks = pd.read_csv(source / f"{name}.tsv", sep="\t", chunksize=1_000_000, low_memory=False,
                             encoding_errors="replace", on_bad_lines="skip")
        return pd.concat(list(chunks), ignore_index=True)

    out.mkdir(parents=True, exist_ok=True)
    patents = read("g_patent")
    abstracts = read("g_patent_abstract")
    patents = patents.merge(abstracts, on="patent_id", how="left")
    patents = patents.rename(columns={"patent_id": "patentId:ID", "patent_title": "title:str",
                                      "patent_abstract": "abstract:str", "patent_date": "date:neo4j.time.Date"})
    patents[":LABEL"] = "Patent"
    patents["imported"] = time.time()
    patents.to_csv(out / "g_patent.csv", index=False)
    del patents, abstracts
    cites = read("g_us_patent_citation")
    cites = cites.rename(columns={"patent_id": ":START_ID", "citation_patent_id": ":END_ID"})
    cites[":TYPE"] = "cites"
    cites.to_csv(out / "g_citation.csv", index=False)
    del cites
    cpc = read("g_cpc_current")
    cpc = cpc.rename(columns={"cpc_subclass": ":START_ID", "patent_id": ":END_ID"})
    cpc[":TYPE"] = "classifies"
    cpc.to_csv(out / "g_cpc.csv", index=False)
    del cpc
    if (source / "g_cpc_title.tsv").exists():  # PatentCL's CPCGroup nodes (it read the older cpc_group.tsv)
        groups = read("g_cpc_title")[["cpc_group", "cpc_group_title"]]
        groups = groups.rename(columns={"cpc_group": "cpcGroupId:ID", "cpc_group_title": "title:str"})
        groups[":LABEL"] = "CPCGroup"
        groups.to_csv(out / "cpc_group.csv", index=False)


def run_floor(source: Path, out: Path) -> None:
    """Bare Polars: read every table as strings and write it back, nothing else."""
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        header = (source / f"{name}.tsv").open("rb").readline().decode().rstrip("\n").split("\t")
        cols = [h.strip('"') for h in header]
        pl.scan_csv(source / f"{name}.tsv", separator="\t", has_header=False, skip_rows=1,
                    schema={c: pl.String for c in cols}, encoding="utf8-lossy", truncate_ragged_lines=True,
                    missing_columns="insert").sink_csv(out / f"{name}.csv")


RUNNERS = {"ours": run_ours, "pandas": run_pandas, "floor": run_floor}


def child(name: str, source: Path, out: Path, cpus: int | None = None) -> None:
    if cpus:
        # Before Polars is imported: its thread pool is sized from the CPUs this process may use.
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cpus])
        os.environ["POLARS_MAX_THREADS"] = str(cpus)
    t0 = time.perf_counter()
    RUNNERS[name](source, out)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "seconds": round(wall, 2), "peak_rss_mb": round(rss_mb, 1)}))


def warm(source: Path) -> None:
    """Read every input once before each contender, so that none starts with a colder page cache
    than another (the line count reads the tables just before the first one).

    It does not make runs above the cache size comparable by itself: for minutes after a pandas run
    at 9M patents every contender is slower here, so compare contenders run in the same state
    (benchmarks/RESULTS.md).
    """
    for t in TABLES:
        with (source / f"{t}.tsv").open("rb") as fh:
            while fh.read(16 << 20):
                pass


def measure_once(name: str, source: Path, settle: float = 0.0, cpus: int | None = None) -> dict[str, float]:
    """One run of contender ``name`` in its own process.

    ``settle``: seconds to wait after reading the input. On our VMs, writing into memory pages the
    guest has not used lately costs ~2 s per GB (dd of 1 GB: ~0.5 GB/s; 4.5 GB/s right after
    another 1 GB file was deleted; ~0.5 GB/s again 30 s later), so a contender that starts right
    after the previous one deleted its output writes faster than one that starts later. Waiting
    ~20 s lets every contender start from the same, slow state.

    ``cpus``: run on that many of this machine's cores (the first ones), to see how a contender
    scales with cores.
    """
    warm(source)
    time.sleep(settle)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        cmd = [sys.executable, __file__, "--child", name, "--source", str(source), "--out", str(out)]
        if cpus:
            cmd += ["--cpus", str(cpus)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure(name: str, source: Path, repeat: int, settle: float = 0.0, cpus: int | None = None) -> dict[str, Any]:
    """The median run of ``repeat`` (by wall time); the others are listed, since this machine is noisy."""
    runs = sorted((measure_once(name, source, settle, cpus) for _ in range(repeat)), key=lambda r: r["seconds"])
    median: dict[str, Any] = dict(runs[len(runs) // 2])
    median["runs_s"] = [r["seconds"] for r in runs]
    return median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, help="PatentsView-format folder (made with `patentminer synth`).")
    ap.add_argument("--patents", type=int, default=1_000_000, help="Generate this many patents when no --source.")
    ap.add_argument("--only", nargs="*", default=list(RUNNERS), choices=list(RUNNERS))
    ap.add_argument("--repeat", type=int, default=1, help="Runs per contender; the median is reported.")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="Seconds to wait before each run, so that no run starts in the memory freed by the "
                         "one before (see measure_once); 20 is enough on our VMs.")
    ap.add_argument("--cpus", type=int, help="Run every contender on this many cores (default: all).")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=list(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    available = len(os.sched_getaffinity(0))
    if args.cpus is not None and not 1 <= args.cpus <= available:
        ap.error(f"--cpus must be between 1 and {available} (the cores this process may use), got {args.cpus}")
    if args.child:
        child(args.child, args.source, args.out, args.cpus)
        return
    source = args.source
    if source is None:
        from patentminer.etl.synth import SynthConfig, synth

        source = Path(tempfile.mkdtemp(prefix="bench-synth-"))
        synth(source, SynthConfig(patents=args.patents, seed=1))
    sizes = {t: (source / f"{t}.tsv").stat().st_size for t in TABLES}
    rows = {}
    for t in ("g_patent", "g_us_patent_citation", "g_cpc_current"):
        with (source / f"{t}.tsv").open("rb") as fh:
            rows[t] = sum(1 for _ in fh) - 1
    results = {name: measure(name, source, args.repeat, args.settle, args.cpus) for name in args.only}
    report: dict[str, Any] = {"input_bytes": sizes, "input_lines": rows, "cpus": args.cpus or available,
                              "results": results}
    if "ours" in results:
        o = results["ours"]
        report["ratios"] = {
            f"{k}_vs_ours": {"time": round(v["seconds"] / o["seconds"], 2),
                             "peak_rss": round(v["peak_rss_mb"] / o["peak_rss_mb"], 2)}
            for k, v in results.items() if k != "ours"}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"input: {sum(sizes.values()) / 1e9:.2f} GB; lines: " + ", ".join(f"{k} {v:,}" for k, v in rows.items())
          + f"; cores: {report['cpus']}")
    print(f"{'contender':<10} {'seconds':>9} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(f"{name:<10} {r['seconds']:>9.1f} {r['peak_rss_mb']:>12.0f}   runs: {r['runs_s']}")
    for k, v in report.get("ratios", {}).items():
        print(f"{k}: time x{v['time']}, peak RSS x{v['peak_rss']}")


if __name__ == "__main__":
    main()
