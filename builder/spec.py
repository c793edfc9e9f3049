"""The YAML spec: frozen, typed objects validated once, at load.

Every error names the spec file and the key path, e.g.
``models.yaml: models[1].dynamic_batching.max_queue_delay_us: Input should be ...``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from builder.errors import SpecError

__all__ = [
    "DynamicBatching",
    "ExportSettings",
    "ModelSpec",
    "Spec",
    "SpecDefaults",
    "TokenizerSettings",
    "load_spec",
    "parse_spec",
]

Target = Literal["cpu", "gpu"]
Task = Literal[
    "text-embedding",
    "text-classification",
    "text-reranking",
    "token-classification",
    "text-generation",
]
Backend = Literal["onnx", "vllm"]
Pooling = Literal["mean", "cls", "max", "mean_sqrt_len_tokens", "lasttoken"]
# a reranker's score: CrossEncoder.predict's activation (sigmoid for one-label models)
Activation = Literal["sigmoid", "none"]
# transformers' TokenClassificationPipeline aggregation strategies
Aggregation = Literal["none", "simple", "first", "average", "max"]

# A name becomes a folder in the repository and part of member names: keep it boring.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Suffixes of the member models an entry expands into; see builder.plan.
MEMBER_SUFFIXES = ("_tokenizer", "_onnx", "_postprocess")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DynamicBatching(_Frozen):
    """Triton's dynamic batcher for the ONNX member."""

    max_queue_delay_us: int = Field(default=0, ge=0, le=60_000_000)
    preferred_batch_sizes: tuple[int, ...] = ()

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _positive_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in value):
            raise ValueError("every preferred batch size must be >= 1")
        if list(value) != sorted(set(value)):
            raise ValueError("preferred batch sizes must be strictly increasing")
        return value


class TokenizerSettings(_Frozen):
    """The tokenizer member: its instances, its dynamic batcher, and the length buckets it pads
    to so that the model member's batcher can merge requests of different lengths."""

    instances: int = Field(default=1, ge=1, le=64)
    max_queue_delay_us: int = Field(default=0, ge=0, le=60_000_000)
    # every batch is padded to its longest text rounded up to a multiple of ``bucket`` tokens
    # (capped at max_sequence_length); 1 (default): to the longest text only. On CPU, 1 measured
    # fastest (see README, "Performance"): ONNX Runtime gains little from merging requests
    # there, and padding costs compute
    bucket: int = Field(default=1, ge=1, le=8192)


class ExportSettings(_Frozen):
    """How the model is exported and how closely it must match PyTorch."""

    format: Literal["onnx"] = "onnx"
    opset: int = Field(default=18, ge=14, le=21)
    atol: float = Field(default=1.0e-4, gt=0, allow_inf_nan=False)
    # |onnx - torch| <= atol + rtol * |torch|; None: the task's default (registry)
    rtol: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    allow_parity_failure: bool = False
    # texts parity also runs on, tokenized as served (besides built-in samples and random ids)
    parity_texts: tuple[str, ...] = ()
    # ONNX Runtime's transformer fusions (attention, layer norm, GELU) on the exported graph,
    # kept only when the fused graph passes parity too (the manifest records the outcome)
    optimize: bool = False

    @field_validator("atol", "rtol", mode="before")
    @classmethod
    def _yaml_exponent(cls, value: object) -> object:
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept it as the number it means.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


# keys that only some tasks take
_TASK_ONLY_KEYS = {
    "pooling": ("text-embedding",),
    "normalize": ("text-embedding",),
    "labels": ("text-classification", "token-classification"),
    "pair": ("text-classification",),
    "activation": ("text-reranking",),
    "aggregation": ("token-classification",),
    "gguf": ("text-generation",),
}


class ModelSpec(_Frozen):
    """One entry of ``models:``; it becomes an ensemble named ``name`` plus its members."""

    name: str = Field(min_length=1, max_length=100)
    task: Task
    backend: Backend | None = None
    source: str | None = Field(default=None, min_length=1)
    revision: str | None = None
    target: Target | None = None
    max_sequence_length: int = Field(default=256, ge=2, le=8192)
    # the longest text (UTF-8 bytes) the tokenizer takes; None: 1024 x max_sequence_length
    max_text_bytes: int | None = Field(default=None, ge=1, le=1 << 30)
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    dynamic_batching: DynamicBatching | None = DynamicBatching()
    instances: int = Field(default=1, ge=1, le=64)
    # ONNX Runtime intra-op threads per instance; None: derived (see plan.onnx_threads)
    threads: int | None = Field(default=None, ge=1, le=1024)
    # local serving only (the stand-in for the ONNX Runtime backend): an instance running
    # while its siblings are idle borrows their threads; false renders the config parameter
    # lend_idle_threads "false". The NGC image's native backend ignores the parameter
    lend_idle_threads: bool = True
    tokenizer: TokenizerSettings = TokenizerSettings()
    export: ExportSettings = ExportSettings()
    pooling: Pooling | None = None
    normalize: bool | None = None
    labels: tuple[str, ...] | None = None
    # text-classification: the model reads a pair of texts (TEXT, TEXT_PAIR), e.g. NLI
    pair: bool | None = None
    # text-reranking: the score's activation; None: the model's own (sentence-transformers'
    # CrossEncoder default: config.json's sentence_transformers.activation_fn, else sigmoid)
    activation: Activation | None = None
    # token-classification: how tokens become entities (transformers' aggregation_strategy);
    # None: simple
    aggregation: Aggregation | None = None
    # text-generation: a GGUF file (``package:<package>/<file>.gguf`` or a path) that the build
    # converts to a float32 Hugging Face folder and serves as engine.model (builder.gguf)
    gguf: str | None = Field(default=None, min_length=1)
    engine: dict[str, Any] | None = None
    report_metrics: bool = True

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _SAFE_NAME.fullmatch(value):
            raise ValueError(
                f"unsafe model name {value!r}: use letters, digits, '_' and '-', "
                "starting with a letter or digit (no '/', '..' or spaces)"
            )
        return value

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value is None:
            return None
        from builder.engine_args import mistyped_engine_args, unknown_engine_args

        problems = unknown_engine_args(value) + mistyped_engine_args(value)
        if info.data.get("gguf") is not None:
            if "model" in value:
                problems.insert(
                    0,
                    "'model' must not be given with 'gguf': the build sets it to the folder "
                    "it converts the GGUF file into",
                )
        elif "model" not in value:
            problems.insert(
                0,
                "'model' is required (a Hub id or a path where the server runs), or give "
                "'gguf' (a GGUF file the build converts)",
            )
        elif not isinstance(value["model"], str) or not value["model"]:
            problems.insert(0, "'model' must be a non-empty string")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if len(value) < 1:
            raise ValueError("labels must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("labels must be unique")
        if any(not label for label in value):
            raise ValueError("labels must be non-empty strings")
        return value

    @model_validator(mode="after")
    def _task_keys(self) -> ModelSpec:
        if self.task == "text-generation":
            return self._generation_keys()
        if self.backend not in (None, "onnx"):
            raise ValueError(f"backend {self.backend!r} serves only task text-generation")
        if self.source is None:
            raise ValueError(f"'source' is required for task {self.task}")
        if self.engine is not None:
            raise ValueError("'engine' applies only to task text-generation with backend vllm")
        self._task_only_keys()
        batching = self.dynamic_batching
        if batching and any(s > self.max_batch_size for s in batching.preferred_batch_sizes):
            raise ValueError(
                "dynamic_batching.preferred_batch_sizes must not exceed "
                f"max_batch_size ({self.max_batch_size})"
            )
        return self

    def _task_only_keys(self) -> None:
        for key, tasks in _TASK_ONLY_KEYS.items():
            if self.task not in tasks and getattr(self, key) is not None:
                which = "task " if len(tasks) == 1 else "tasks "
                raise ValueError(f"'{key}' applies only to {which}{' and '.join(tasks)}")

    def _generation_keys(self) -> ModelSpec:
        if self.backend != "vllm":
            raise ValueError("task text-generation needs backend: vllm")
        if self.engine is None and self.gguf is None:
            raise ValueError(
                "backend vllm needs an 'engine' mapping (vLLM engine arguments), or 'gguf'"
            )
        reasons = {
            "max_batch_size": "vLLM batches requests itself (continuous batching), so the "
            "config must say max_batch_size: 0",
            "dynamic_batching": "vLLM batches requests itself; Triton's dynamic batcher does "
            "not apply to a decoupled vllm model",
            "instances": "the vllm backend runs one KIND_MODEL instance; use "
            "engine.tensor_parallel_size or more models",
            "threads": "vLLM picks its own threads",
            "lend_idle_threads": "vLLM picks its own threads",
            "source": "the vllm backend loads engine.model; put the model there (or a GGUF "
            "file in 'gguf')",
            "max_sequence_length": "use engine.max_model_len",
            "max_text_bytes": "applies to encoder models (the tokenizer member)",
            "export": "vLLM models are not exported",
            "pooling": "applies only to task text-embedding",
            "normalize": "applies only to task text-embedding",
            "labels": "applies only to tasks text-classification and token-classification",
            "pair": "applies only to task text-classification",
            "activation": "applies only to task text-reranking",
            "aggregation": "applies only to task token-classification",
            "target": "vLLM picks its device; the instance kind is KIND_MODEL",
        }
        for key, reason in reasons.items():
            if key in self.model_fields_set:
                raise ValueError(f"'{key}' is not allowed on a vLLM model: {reason}")
        return self

    @property
    def effective_pooling(self) -> Pooling:
        return self.pooling or "mean"

    @property
    def effective_normalize(self) -> bool:
        return True if self.normalize is None else self.normalize

    @property
    def effective_aggregation(self) -> Aggregation:
        return self.aggregation or "simple"


class SpecDefaults(_Frozen):
    target: Target = "cpu"
    # CPU cores of the machine that serves the repository (ONNX Runtime threads are derived
    # from it and the instance count); None: not known at build time
    cores: int | None = Field(default=None, ge=1, le=1024)


class Spec(_Frozen):
    """A whole spec file. ``path`` is where it was read from (sources resolve against it)."""

    repository: str = "model_repository"
    defaults: SpecDefaults = SpecDefaults()
    models: tuple[ModelSpec, ...]
    _path: Path = PrivateAttr(default=Path("models.yaml"))

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        if not self.models:
            raise ValueError("models: the spec must list at least one model")
        taken: dict[str, str] = {}
        for index, model in enumerate(self.models):
            names = [model.name] + [model.name + suffix for suffix in MEMBER_SUFFIXES]
            for name in names:
                # case-insensitively: the names become folders, and some filesystems fold case
                if name.lower() in taken:
                    raise ValueError(
                        f"models[{index}].name: {model.name!r} collides with "
                        f"{taken[name.lower()]} (Triton model name {name!r} would be used twice)"
                    )
                taken[name.lower()] = f"models[{index}] ({model.name!r})"
        return self

    def target_of(self, model: ModelSpec) -> Target:
        return model.target or self.defaults.target

    @property
    def path(self) -> Path:
        return self._path

    def where(self, model: ModelSpec, key: str = "") -> str:
        """``<spec file>: models[i].key (model 'name')``, the prefix of an error about it."""
        index = self.models.index(model)
        return f"{self.path}: models[{index}]{'.' + key if key else ''} (model {model.name!r})"

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def repository_dir(self) -> Path:
        return (self.base_dir / self.repository).resolve()


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # YAML merge keys (`<<: *base`) go first; own keys override
    merged = len(node.value) - own
    mapping: dict[Any, Any] = {}
    own_keys: set[Any] = set()
    for position, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise SpecError(
                f"line {key_node.start_mark.line + 1}, column {key_node.start_mark.column + 1}: "
                f"a mapping key must be a plain value, not {type(key).__name__}"
            )
        if position >= merged:
            if key in own_keys:
                raise SpecError(
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1}, "
                    f"column {key_node.start_mark.column + 1}"
                )
            own_keys.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + part
    return path or "<root>"


def _describe(error: Any, data: Any) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if not loc:
        return message
    where = _key_path(loc)
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        try:
            name = data["models"][loc[1]]["name"]
            where += f" (model {name!r})"
        except (KeyError, IndexError, TypeError):
            pass
    shown_input = error.get("input")
    if error["type"] not in ("missing", "extra_forbidden") and not isinstance(shown_input, dict):
        shown = json.dumps(error["input"], default=str)
        if len(shown) <= 80:
            message += f" (got {shown})"
    return f"{where}: {message}"


def parse_spec(text: str, path: Path) -> Spec:
    """Parse and validate spec text; errors name ``path`` and the key path."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{at}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the spec must be a mapping with a 'models' list")
    try:
        # Through JSON so that strict mode accepts YAML lists for tuples and strings for literals.
        spec = Spec.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        lines = [_describe(error, data) for error in exc.errors()]
        if len(lines) == 1:
            raise SpecError(f"{path}: {lines[0]}") from None
        raise SpecError(
            f"{path}: invalid spec ({len(lines)} problems)\n  " + "\n  ".join(lines)
        ) from None
    spec._path = path.resolve()
    return spec


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise SpecError(f"{spec_path}: is a folder; give the spec file (models.yaml)") from None
    except OSError as exc:
        raise SpecError(f"{spec_path}: cannot read spec: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{spec_path}: the spec is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    return parse_spec(text, spec_path)
