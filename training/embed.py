"""Every patent of the graph encoded by a sentence-transformers model: the embeddings the ``knn``
strategy mines with.

The store (``DIR``)::

    embeddings.npy   float16 [patents, dim], unit-length rows, patents in (grant date, id) order, so
                     "granted before the anchor" is a prefix of the rows
    patents.parquet  id, date: the patents in that order
    embed.json       model, the SHA-256 of its weights, template, prompt, dim, count, the patent set's
                     hash, timings; written last

Texts come from the graph with the mining template, encoded with the model's own document prompt
where it declares one, in chunks on a GPU when there is one. The rows are written into a
memory-mapped ``embeddings.npy.partial``; an interrupted run continues from the last finished chunk
when it runs again with the same model, template and graph.

Example::

    with Graph.connect() as graph:
        info = embed(graph, Path("runs/emb"), EmbedOptions(model="packaged:all-MiniLM-L6-v2"))
    store = Embeddings.open(Path("runs/emb"))
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from patentminer.cypher.connection import Graph
from patentminer.errors import ConfigError, InputError, OutputExistsError

FORMAT = 1
CHUNK = 20_000


@dataclass(frozen=True)
class EmbedOptions:
    """What to encode with. ``model``: a hub name, a local directory or packaged:NAME."""

    model: str
    template: str = "{title} [SEP] {abstract}"
    batch_size: int = 64
    max_seq_length: int | None = None
    workers: int = 2
    overwrite: bool = False

    def validate(self) -> None:
        if self.batch_size < 1 or self.workers < 1:
            raise ConfigError("--batch-size and --workers must be at least 1.")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise ConfigError(f"--max-seq-length {self.max_seq_length}: give at least 8.")
        try:
            self.template.format(title="t", abstract="a")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"--template {self.template!r} may use only {{title}} and {{abstract}}.") from e


def weights_sha256(model: Any) -> str:
    """A hash of a model's weights: every tensor of its state dict, by name, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\0")
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def patents_sha256(ids: pl.Series) -> str:
    """A hash of a patent set (the ids in the store's order)."""
    h = hashlib.sha256()
    for start in range(0, len(ids), 100_000):
        h.update("\n".join(ids.slice(start, 100_000).to_list()).encode() + b"\n")
    return h.hexdigest()


def patent_order(graph: Graph) -> pl.DataFrame:
    """Every dated patent (id, date), in (date, id) order: the rows of an embedding store."""
    from patentminer.cypher.mining import list_patents
    from patentminer.cypher.registry import Registry

    return list_patents(graph, Registry.load().checked("anchors")).select("id", "date").sort("date", "id")


@dataclass(frozen=True)
class Embeddings:
    """An embedding store, memory-mapped: ``vectors[i]`` is the unit-length embedding of ``ids[i]``."""

    path: Path
    info: dict[str, Any]
    ids: pl.Series
    days: np.ndarray  # grant dates as days since 1970, in row order (ascending)
    vectors: np.ndarray

    @staticmethod
    def open(path: Path) -> Embeddings:
        meta = path / "embed.json"
        if not meta.exists():
            hint = " (an interrupted run: run `patentminer embed` again to finish)" if (
                path / "embeddings.npy.partial").exists() else ""
            raise ConfigError(f"--embeddings {path} holds no embed.json{hint}; make one with `patentminer embed "
                              f"--model MODEL --out {path}`.")
        info = json.loads(meta.read_text())
        if info.get("format") != FORMAT:
            raise ConfigError(f"--embeddings {path} has store format {info.get('format')}; this patentminer reads "
                              f"{FORMAT}: run `patentminer embed` again.")
        patents = pl.read_parquet(path / "patents.parquet")
        vectors = np.load(path / "embeddings.npy", mmap_mode="r")
        if vectors.shape[0] != patents.height:
            raise InputError(f"{path}: embeddings.npy has {vectors.shape[0]:,} rows for {patents.height:,} patents; "
                             "run `patentminer embed --overwrite` again.")
        days = patents["date"].str.to_date().cast(pl.Int32).to_numpy()
        return Embeddings(path, info, patents["id"], days, vectors)

    def rows(self, ids: pl.Series) -> np.ndarray:
        """The row of each id (-1 where the store lacks it)."""
        index = pl.DataFrame({"id": self.ids}).with_row_index("row")
        found = pl.DataFrame({"id": ids}).join(index, on="id", how="left", maintain_order="left")["row"]
        return found.fill_null(-1).cast(pl.Int64).to_numpy()


def _fingerprint(options: EmbedOptions, model_hash: str, patents_hash: str) -> dict[str, Any]:
    return {"model_sha256": model_hash, "template": options.template, "max_seq_length": options.max_seq_length,
            "patents_sha256": patents_hash}


def embed(graph: Graph, out: Path, options: EmbedOptions, progress: Callable[[int, int], None] | None = None,
          echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Encode every dated patent of the graph into ``out``; returns what ``embed.json`` holds."""
    import torch

    from patentminer.dataset.assemble import TextFetcher
    from patentminer.training.evaluate import encode
    from patentminer.training.train import load_model

    options.validate()
    say = echo or (lambda _m: None)
    started = time.monotonic()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(options.model, options.max_seq_length, device)
    model_hash = weights_sha256(model)  # before any cast: the same model hashes alike on every device
    if device == "cuda":
        model.half()  # the store is float16 anyway; half the memory traffic
    say("listing patents")
    from patentminer.cypher.mining import check_graph

    check_graph(graph)
    order = patent_order(graph)
    fingerprint = _fingerprint(options, model_hash, patents_sha256(order["id"]))
    meta = out / "embed.json"
    if meta.exists():
        previous = json.loads(meta.read_text())
        if previous.get("fingerprint") == fingerprint and not options.overwrite:
            return dict(previous)
        if not options.overwrite:
            raise OutputExistsError(f"{out} holds embeddings of another model, template or graph "
                                    f"({previous.get('model')}); pass --overwrite to replace them or choose another "
                                    "--out.")
        meta.unlink()
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "embeddings.npy.partial"
    state = out / "embed-state.json"
    dim = int(model.get_embedding_dimension())
    n = order.height
    done = 0
    if partial.exists() and state.exists() and not options.overwrite:
        saved = json.loads(state.read_text())
        if saved.get("fingerprint") == fingerprint and saved.get("dim") == dim:
            done = int(saved["done"])
    if done == 0:
        vectors = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(n, dim))
    else:
        vectors = np.load(partial, mmap_mode="r+")
        say(f"resuming at patent {done:,} of {n:,}")
    order.write_parquet(out / "patents.parquet")
    fetcher = TextFetcher(graph, options.template, options.workers)
    encoded = 0
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as prefetch:
        starts = list(range(done, n, CHUNK))
        pending = prefetch.submit(fetcher.frame, order["id"].slice(starts[0], CHUNK)) if starts else None
        for i, start in enumerate(starts):
            assert pending is not None
            texts = pending.result()["text"].to_list()
            if i + 1 < len(starts):
                pending = prefetch.submit(fetcher.frame, order["id"].slice(starts[i + 1], CHUNK))
            emb = encode(model, texts, "document", batch_size=options.batch_size)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            vectors[start:start + len(texts)] = emb.astype(np.float16)
            vectors.flush()
            encoded += len(texts)
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint, "dim": dim, "done": start + len(texts)}))
            tmp.replace(state)
            if progress:
                progress(start + len(texts), n)
    del vectors
    partial.replace(out / "embeddings.npy")
    state.unlink(missing_ok=True)
    seconds = time.monotonic() - t0
    prompts = getattr(model, "prompts", {}) or {}
    info = {
        "format": FORMAT, "model": options.model, "model_sha256": model_hash, "dim": dim, "patents": n,
        "template": options.template, "max_seq_length": int(model.max_seq_length),
        "prompt": next((prompts[k] for k in ("document", "passage", "corpus") if k in prompts), ""),
        "device": device, "fingerprint": fingerprint, "options": asdict(options),
        "texts_per_s": round(encoded / seconds, 1) if encoded and seconds else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(meta)
    return info
