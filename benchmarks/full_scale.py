"""The whole chain at full scale, stage by stage, through the CLI a user runs: wall time, peak memory, disk.

Stages (each one `patentminer` command; its figures go to WORK/full_scale.json as soon as it ends, so
an interrupted run continues with the first stage that has none; an interrupted mine keeps its finished
batches, and its wall time is the sum of its runs, each paying its start-up again). The stages after the
import start the managed server when it is not running.

    synth      patentminer synth WORK/patentsview --patents N --seed 1 --zip
    etl        patentminer etl WORK/patentsview WORK/import
    import     patentminer import WORK/import --overwrite   (the managed server, sized automatically)
    mine:S     patentminer mine --strategy S --out WORK/mined/S --negatives 3 --seed 1   (every anchor)
    evaluate   patentminer evaluate packaged:all-MiniLM-L6-v2 --data WORK/mined/D
    train      patentminer train WORK/train.toml   (D's train split, capped at --train-steps, and the dev
               evaluation; test_eval = false: the evaluate stage has scored the same benchmark)

D is the mined set named by --data (citation-cpc by default). Every strategy mined from one graph with
one seed writes the same benchmark, so evaluate gives the same figures on either set.

Only when named in --stages (the knn strategy's false-negative figure):

    embed      patentminer embed --model packaged:all-MiniLM-L6-v2 --out WORK/embeddings --max-seq-length 64
    mine:knn   patentminer mine --strategy knn --embeddings WORK/embeddings ... --limit-anchors 50000

Peak RSS is sampled every 0.5 s over the command's process tree (neo4j-admin included), without the
Neo4j server, whose heap and page cache are reported beside it. Disk is the size of what the stage
wrote. `--free-disk` removes a stage's input once the next stage has read it (the TSVs after the ETL,
the CSVs after the import), for machines whose disk cannot hold every stage at once.

    .venv/bin/python benchmarks/full_scale.py --work /data/full --patents 9000000 --free-disk
    .venv/bin/python benchmarks/full_scale.py --work /data/1m --patents 1000000 --stages synth,etl,import
    .venv/bin/python benchmarks/full_scale.py --work /data/1m --stages embed,mine:knn   # knn false negatives
    .venv/bin/python benchmarks/full_scale.py --work /data/full --table      # print the figures only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from patentminer.cypher.runtime import SERVER_MAIN, Neo4jRuntime

STRATEGIES = ("citation-cpc", "random")
MODEL = "packaged:all-MiniLM-L6-v2"
OPTIONAL = ("embed", "mine:knn")  # run only when named in --stages


class TreeSampler:
    """Peak RSS of a process and its descendants (not the Neo4j server), and of the server, every 0.5 s."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self.server_peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    if SERVER_MAIN in " ".join(p.cmdline()):
                        continue
                except psutil.Error:
                    continue
                total += rss
            self.peak = max(self.peak, total)
            pid = Neo4jRuntime().status().pid
            if pid:
                with contextlib.suppress(psutil.Error):
                    self.server_peak = max(self.server_peak, psutil.Process(pid).memory_info().rss)

    def finish(self) -> tuple[int, int]:
        self.stop.set()
        self.thread.join()
        return self.peak, self.server_peak


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def store_bytes() -> int:
    rt = Neo4jRuntime()
    return du(rt.state_dir / "data") if (rt.state_dir / "data").exists() else 0


def run_stage(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run one stage; an interrupted or failed one returns its figures so far with ``failed`` set."""
    t0 = time.monotonic()
    out, failed = "", None
    with log.open("a") as err:
        err.write(f"\n[{time.strftime('%Y-%m-%d %H:%M:%S')}] {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        sampler = TreeSampler(proc.pid)
        try:
            out, _ = proc.communicate()
        except KeyboardInterrupt:  # Ctrl-C reaches the stage too (same process group); let it stop
            proc.wait()
            failed = "interrupted"
    peak, server = sampler.finish()
    seconds = time.monotonic() - t0
    if failed is None and proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        failed = f"`{' '.join(cmd)}` failed ({proc.returncode}): {' | '.join(tail)} (log: {log})"
    try:
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() and not failed else {}
    except ValueError:
        result = {}
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 2**20), "server_rss_mb": round(server / 2**20),
            "result": result, "command": " ".join(cmd), "failed": failed}


def add_segments(fig: dict[str, Any], earlier: dict[str, Any] | None) -> dict[str, Any]:
    """Fold the figures of earlier, interrupted runs of a stage into this one: a stage that resumes
    (mine keeps its finished batches) costs the sum of its runs, each of which pays its start-up again."""
    if not earlier:
        return {**fig, "segments": 1}
    return {**fig, "seconds": round(fig["seconds"] + earlier["seconds"], 1),
            "peak_rss_mb": max(fig["peak_rss_mb"], earlier["peak_rss_mb"]),
            "server_rss_mb": max(fig["server_rss_mb"], earlier["server_rss_mb"]),
            "segments": earlier["segments"] + 1}


def stages(work: Path, args: argparse.Namespace) -> list[tuple[str, list[str], Path]]:
    pm = str(Path(sys.executable).with_name("patentminer"))
    src, csv = work / "patentsview", work / "import"
    out: list[tuple[str, list[str], Path]] = [
        ("synth", [pm, "synth", str(src), "--patents", str(args.patents), "--seed", "1", "--zip", "--json"], src),
        ("etl", [pm, "etl", str(src), str(csv), "--overwrite", "--json"], csv),
        ("import", [pm, "import", str(csv), "--overwrite", "--json"], Neo4jRuntime().state_dir / "data"),
    ]
    for s in STRATEGIES:
        out.append((f"mine:{s}", [pm, "mine", "--strategy", s, "--out", str(work / "mined" / s), "--negatives", "3",
                                  "--seed", "1", "--json", *(["--overwrite"] if args.redo else [])],
                    work / "mined" / s))
    out.append(("evaluate", [pm, "evaluate", MODEL, "--data", str(work / "mined" / args.data), "--out",
                             str(work / "report"), "--json"], work / "report"))
    # An interrupted training run continues from its last checkpoint (every save_steps).
    out.append(("train", [pm, "train", str(work / "train.toml"), "--json", *([] if args.redo else ["--resume"])],
                work / "model"))
    # Not in the default chain: the knn strategy's false-negative figure (what share of each anchor's
    # top-N MiniLM neighbours the graph vetoes, by rule) over a seeded sample of anchors.
    emb = work / "embeddings"
    out.append(("embed", [pm, "embed", "--model", MODEL, "--out", str(emb), "--max-seq-length", "64", "--json"],
                emb))
    out.append(("mine:knn", [pm, "mine", "--strategy", "knn", "--embeddings", str(emb), "--out",
                             str(work / "mined" / "knn"), "--negatives", "3", "--seed", "1", "--limit-anchors",
                             str(args.knn_anchors), "--json", *(["--overwrite"] if args.redo else [])],
                work / "mined" / "knn"))
    return out


def save(record: Path, figures: dict[str, Any]) -> None:
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, indent=2))
    tmp.replace(record)


def write_train_job(work: Path, steps: int, data: str) -> None:
    (work / "train.toml").write_text(
        f'model = "{MODEL}"\ndata = "mined/{data}"\noutput_dir = "model"\nmax_steps = {steps}\n'
        'batch_size = 16\nmax_seq_length = 128\neval_steps = -1\nsave_steps = 100\ntest_eval = false\n')


def data_of(fig: dict[str, Any]) -> str:
    """The mined set a recorded evaluate or train stage read (from its command or its train job)."""
    cmd = fig.get("command", "").split()
    if "--data" in cmd:
        return Path(cmd[cmd.index("--data") + 1]).name
    return Path((fig.get("result") or {}).get("dataset", {}).get("path", "?")).name


def summary(name: str, fig: dict[str, Any]) -> str:
    r = fig.get("result") or {}
    if name == "synth":
        return ", ".join(f"{k} {v:,}" for k, v in r.get("rows", {}).items())
    if name == "etl":
        g = r.get("graph", {})
        return (f"{sum(g.get('nodes', {}).values()):,} nodes, "
                f"{sum(g.get('relationships', {}).values()):,} relationships")
    if name == "import":
        return f"{r.get('relationships_per_s', 0):,} relationships/s"
    if name == "embed":
        return f"{r.get('patents', 0):,} patents, {r.get('texts_per_s')} texts/s"
    if name == "mine:knn":
        return f"top-N vetoed by the graph: {json.dumps((r.get('knn') or {}).get('flagged_share'))}"
    if name.startswith("mine:"):
        return (f"{r.get('anchors', {}).get('mined', 0):,} anchors, {r.get('anchors_per_s')} anchors/s, "
                f"rows {r.get('rows')}")
    if name == "evaluate":
        m = (r.get("models") or [{}])[0]
        return (f"packaged MiniLM on the {data_of(fig)} set's benchmark: "
                f"MRR@10 {m.get('retrieval', {}).get('mrr@10', float('nan')):.4f}")
    if name == "train":
        return f"{r.get('global_step')} steps on the {data_of(fig)} set, {r.get('seconds')} s of training"
    return ""


def table(figures: dict[str, Any]) -> str:
    lines = ["| stage | wall | peak RSS | disk written | Neo4j heap / page cache | what |",
             "|---|---:|---:|---:|---|---|"]
    for name, fig in figures.items():
        if name.startswith("_"):
            continue
        neo = fig.get("neo4j") or {}
        mem = f"{neo.get('heap')} / {neo.get('pagecache')}" if neo.get("heap") else "-"
        runs = f" ({fig['segments']} runs)" if fig.get("segments", 1) > 1 else ""
        lines.append(f"| {name} | {fig['seconds'] / 60:.1f} min{runs} | {fig['peak_rss_mb'] / 1024:.1f} GB | "
                     f"{fig['disk_bytes'] / 1e9:.1f} GB | {mem} | {summary(name, fig)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--patents", type=int, default=9_000_000)
    ap.add_argument("--stages", default=None, help="Comma-separated stage names (default: all, in order).")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--data", choices=STRATEGIES, default="citation-cpc",
                    help="The mined set that evaluate and train read (default: citation-cpc).")
    ap.add_argument("--knn-anchors", type=int, default=50_000,
                    help="Seeded sample of anchors for the optional mine:knn stage.")
    ap.add_argument("--free-disk", action="store_true", help="Remove each stage's input once it has been read.")
    ap.add_argument("--redo", action="store_true", help="Run the named stages even when they have figures.")
    ap.add_argument("--table", action="store_true", help="Print the recorded figures as a table and exit.")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    record = work / "full_scale.json"
    figures: dict[str, Any] = json.loads(record.read_text()) if record.exists() else {}
    if args.table:
        print(table(figures))
        return
    write_train_job(work, args.train_steps, args.data)
    wanted = set(args.stages.split(",")) if args.stages else None
    for name, cmd, output in stages(work, args):
        if name in OPTIONAL:
            if wanted is None or name not in wanted:
                continue
        elif wanted is not None and name not in wanted and name.split(":")[0] not in wanted:
            continue
        if name in figures and not args.redo:
            print(f"[{name}] recorded, skipped", file=sys.stderr)
            continue
        if name not in ("synth", "etl", "import"):
            # The import leaves the server as it found it; the stages after it read the graph.
            Neo4jRuntime().start(timeout=900.0)
        if name == "train" and args.redo:
            shutil.rmtree(output, ignore_errors=True)  # the trainer refuses a directory holding a model
        print(f"[{name}] {' '.join(cmd)}", file=sys.stderr)
        partial = figures.setdefault("_partial", {})
        fig = add_segments(run_stage(cmd, work / f"{name.replace(':', '_')}.log"),
                           None if args.redo else partial.get(name))
        if fig.pop("failed") is not None:
            # Kept for the next run of this stage (a mine resumes its batches), never shown as finished.
            partial[name] = {k: fig[k] for k in ("seconds", "peak_rss_mb", "server_rss_mb", "segments")}
            save(record, figures)
            raise SystemExit(f"[{name}] stopped after {fig['seconds']} s in {fig['segments']} run(s); "
                             "run the same command again to continue it.")
        partial.pop(name, None)
        # The import's output is the store (it replaces whatever the database held before).
        fig["disk_bytes"] = (store_bytes() if name == "import" else du(output)) if output.exists() else 0
        rt = Neo4jRuntime()
        state = json.loads(rt.state_file.read_text()) if rt.state_file.exists() else {}
        if name not in ("synth", "etl"):
            fig["neo4j"] = {"heap": state.get("heap"), "pagecache": state.get("pagecache"),
                            "store_bytes": store_bytes()}
        fig["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        figures[name] = fig
        figures["_machine"] = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
        save(record, figures)
        print(f"[{name}] {fig['seconds']} s, peak RSS {fig['peak_rss_mb']:,} MB, disk "
              f"{fig['disk_bytes'] / 1e9:.2f} GB: {summary(name, fig)}", file=sys.stderr)
        if args.free_disk and name == "etl":
            shutil.rmtree(work / "patentsview", ignore_errors=True)
        if args.free_disk and name == "import":
            shutil.rmtree(work / "import", ignore_errors=True)
    print(table(figures))


if __name__ == "__main__":
    main()
