"""What a source folder says about itself, read once into typed objects.

``read_hf_config``: ``config.json`` (model type, sizes, labels, pad id); a missing or
mistyped key is a ``SourceError`` naming the file and the key.
``read_sentence_transformers``: a sentence-transformers folder (``modules.json``): its pooling
mode, whether it normalises, and its ``max_seq_length``. A module we cannot serve (``Dense``,
``LayerNorm``, a pooling mode we do not compute) is an error naming it, never a silently
different embedding. ``resolve_embedding`` merges those with the spec's keys and records where
each value came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from builder.errors import SourceError
from builder.spec import ModelSpec

__all__ = [
    "DEFAULT_MAX_SEQUENCE_LENGTH",
    "EmbeddingSettings",
    "HFConfig",
    "SentenceTransformersFolder",
    "Setting",
    "embedding_settings",
    "hf_config_from",
    "read_hf_config",
    "read_sentence_transformers",
    "reranking_activation",
    "resolve_embedding",
]

T = TypeVar("T")
DEFAULT_MAX_SEQUENCE_LENGTH = 256
Origin = Literal["spec", "model files", "default"]

# sentence-transformers pooling modes we compute (python_backends/text_ops.POOLINGS)
SERVED_POOLINGS = ("cls", "lasttoken", "max", "mean", "mean_sqrt_len_tokens")
# the boolean keys of sentence-transformers < 6 (1_Pooling/config.json) and their mode names
_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(f"{path}: not found") from None
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _int(data: Mapping[str, Any], path: Path, *keys: str, required: bool = True) -> int | None:
    for key in keys:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise SourceError(f"{path}: {key}: expected an integer, got {value!r}")
            return value
    if required:
        raise SourceError(f"{path}: none of {', '.join(keys)} is set")
    return None


# --- config.json -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HFConfig:
    """The parts of ``config.json`` the builder uses."""

    path: Path
    model_type: str
    hidden_size: int
    vocab_size: int
    max_position_embeddings: int | None
    pad_token_id: int | None
    type_vocab_size: int | None
    labels: tuple[str, ...] | None  # id2label in id order; None when not given
    num_labels: int
    raw: Mapping[str, Any]


def _labels(data: Mapping[str, Any], path: Path) -> tuple[str, ...] | None:
    id2label = data.get("id2label")
    if id2label is None or id2label == {}:
        return None
    if not isinstance(id2label, dict) or not id2label:
        raise SourceError(f"{path}: id2label: expected a mapping of ids to labels")
    try:
        by_id = {int(key): str(value) for key, value in id2label.items()}
    except ValueError:
        raise SourceError(f"{path}: id2label: keys must be integers") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise SourceError(f"{path}: id2label: ids must be 0..{len(by_id) - 1}, got {sorted(by_id)}")
    return tuple(by_id[i] for i in range(len(by_id)))


def hf_config_from(data: Mapping[str, Any], path: Path) -> HFConfig:
    """``config.json``'s ``data`` (read from ``path``) as an HFConfig; errors name both."""
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise SourceError(f"{path}: model_type: missing (is this a Hugging Face model folder?)")
    labels = _labels(data, path)
    num_labels = len(labels) if labels else (_int(data, path, "num_labels", required=False) or 2)
    return HFConfig(
        path=path,
        model_type=model_type,
        hidden_size=_int(data, path, "hidden_size", "dim", "d_model") or 0,
        vocab_size=_int(data, path, "vocab_size") or 0,
        max_position_embeddings=_int(data, path, "max_position_embeddings", required=False),
        pad_token_id=_int(data, path, "pad_token_id", required=False),
        type_vocab_size=_int(data, path, "type_vocab_size", required=False),
        labels=labels,
        num_labels=num_labels,
        raw=data,
    )


def read_hf_config(directory: Path) -> HFConfig:
    """``directory/config.json``, read once, as an HFConfig."""
    path = directory / "config.json"
    data = _load_json(path)
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object")
    return hf_config_from(data, path)


# --- sentence-transformers folders -------------------------------------------------------------


@dataclass(frozen=True)
class SentenceTransformersFolder:
    """What ``modules.json`` and its modules' configs say."""

    modules: tuple[str, ...]  # module class names in order, e.g. ("Transformer", "Pooling")
    pooling: str | None  # None when there is no Pooling module
    normalize: bool
    max_seq_length: int | None


def _module_kind(entry: Any, path: Path, index: int) -> tuple[str, str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise SourceError(f"{path}: [{index}]: expected an object with a 'type'")
    module_path = entry.get("path", "")
    if not isinstance(module_path, str):
        raise SourceError(f"{path}: [{index}].path: expected a string")
    return entry["type"].rsplit(".", 1)[-1], module_path


def _pooling_mode(path: Path) -> str:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object")
    if "pooling_mode" in data:  # sentence-transformers >= 6
        mode = data["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode) if isinstance(mode, list) else []
    else:
        modes = [name for key, name in _POOLING_FLAGS.items() if data.get(key) is True]
    if len(modes) != 1 or not isinstance(modes[0], str):
        raise SourceError(
            f"{path}: pooling modes {modes or 'none'}: exactly one is served "
            f"({', '.join(SERVED_POOLINGS)})"
        )
    if modes[0] not in SERVED_POOLINGS:
        raise SourceError(
            f"{path}: pooling mode {modes[0]!r} is not served; served: {', '.join(SERVED_POOLINGS)}"
        )
    return modes[0]


def read_sentence_transformers(directory: Path) -> SentenceTransformersFolder | None:
    """The folder's sentence-transformers pipeline, or None without ``modules.json``."""
    path = directory / "modules.json"
    if not path.is_file():
        return None
    entries = _load_json(path)
    if not isinstance(entries, list) or not entries:
        raise SourceError(f"{path}: expected a non-empty list of modules")
    kinds = [_module_kind(entry, path, i) for i, entry in enumerate(entries)]
    names = tuple(kind for kind, _ in kinds)
    if names[0] != "Transformer" or kinds[0][1] not in ("", "."):
        raise SourceError(
            f"{path}: the first module must be a Transformer at the folder's root "
            f"(got {names[0]} at {kinds[0][1]!r})"
        )
    pooling: str | None = None
    for index, (kind, module_path) in enumerate(kinds[1:], start=1):
        if kind == "Pooling" and pooling is None:
            pooling = _pooling_mode(directory / module_path / "config.json")
        elif kind != "Normalize":
            raise SourceError(
                f"{path}: module {index} ({kind} at {module_path!r}) is not served: the "
                "embedding would differ from sentence-transformers' (only Transformer, "
                "Pooling and Normalize are)"
            )
    return SentenceTransformersFolder(names, pooling, "Normalize" in names, _max_seq(directory))


def _max_seq(directory: Path) -> int | None:
    """sentence_bert_config.json's max_seq_length; sentence-transformers 6 leaves it out and
    keeps it as the tokenizer's model_max_length (tokenizer_config.json)."""
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        path = directory / name
        data = _load_json(path) if path.is_file() else None
        value = _int(data, path, key, required=False) if isinstance(data, dict) else None
        if value is not None and 0 < value < 1_000_000:  # transformers' "no limit" is 1e30
            return value
    return None


# --- the embedding settings a build uses -------------------------------------------------------


@dataclass(frozen=True)
class Setting(Generic[T]):
    value: T
    origin: Origin


@dataclass(frozen=True)
class EmbeddingSettings:
    pooling: Setting[str]
    normalize: Setting[bool]
    max_sequence_length: Setting[int]

    def as_manifest(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"value": setting.value, "from": setting.origin}
            for name, setting in (
                ("pooling", self.pooling),
                ("normalize", self.normalize),
                ("max_sequence_length", self.max_sequence_length),
            )
        }


def resolve_embedding(
    spec_pooling: str | None,
    spec_normalize: bool | None,
    spec_max_length: int | None,
    folder: SentenceTransformersFolder | None,
    default_max_length: int,
) -> EmbeddingSettings:
    """The spec's keys win; then what the folder says; then the defaults (mean, normalise)."""

    def pick(spec_value: T | None, folder_value: T | None, default: T) -> Setting[T]:
        if spec_value is not None:
            return Setting(spec_value, "spec")
        if folder_value is not None:
            return Setting(folder_value, "model files")
        return Setting(default, "default")

    return EmbeddingSettings(
        pooling=pick(spec_pooling, folder.pooling if folder else None, "mean"),
        normalize=pick(spec_normalize, folder.normalize if folder else None, True),
        max_sequence_length=pick(
            spec_max_length, folder.max_seq_length if folder else None, default_max_length
        ),
    )


def embedding_settings(model: ModelSpec, directory: Path) -> EmbeddingSettings:
    """The pooling, normalisation and length a build uses for ``model``: the spec's keys,
    else what the source's sentence-transformers files say, else the defaults."""
    spec_length = (
        model.max_sequence_length if "max_sequence_length" in model.model_fields_set else None
    )
    return resolve_embedding(
        model.pooling,
        model.normalize,
        spec_length,
        read_sentence_transformers(directory),
        DEFAULT_MAX_SEQUENCE_LENGTH,
    )


# --- a reranker's activation ---------------------------------------------------------------------

# sentence-transformers' CrossEncoder records its activation as a dotted torch class path
_ACTIVATIONS = {
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.Sigmoid": "sigmoid",
    "torch.nn.modules.linear.Identity": "none",
    "torch.nn.Identity": "none",
}


def _saved_activation(directory: Path | None, hf_config: HFConfig) -> tuple[str, Path] | None:
    """The activation path a sentence-transformers CrossEncoder saved, and the file it is in:
    ``config_sentence_transformers.json`` (sentence-transformers >= 4 folders), else
    config.json's ``sentence_transformers.activation_fn`` or, before 4,
    ``sbert_ce_default_activation_function`` (CrossEncoder reads them in this order)."""
    if directory is not None:
        path = directory / "config_sentence_transformers.json"
        data = _load_json(path) if path.is_file() else None
        if isinstance(data, dict) and isinstance(data.get("activation_fn"), str):
            return data["activation_fn"], path
    raw = hf_config.raw
    nested = raw.get("sentence_transformers")
    if isinstance(nested, dict) and isinstance(nested.get("activation_fn"), str):
        return nested["activation_fn"], hf_config.path
    legacy = raw.get("sbert_ce_default_activation_function")
    if isinstance(legacy, str):
        return legacy, hf_config.path
    return None


def reranking_activation(
    spec_value: str | None, hf_config: HFConfig, directory: Path | None = None
) -> Setting[str]:
    """A reranker's score activation: the spec's ``activation``, else the one the folder's
    sentence-transformers files record, else CrossEncoder's default for a one-label model
    (sigmoid). An activation we do not compute is an error that names it and the key."""
    if spec_value is not None:
        return Setting(spec_value, "spec")
    saved = _saved_activation(directory, hf_config)
    if saved is None:
        return Setting("sigmoid", "default")
    path_name, path = saved
    if path_name not in _ACTIVATIONS:
        raise SourceError(
            f"{path}: activation {path_name!r} is not served (served: torch Sigmoid and "
            "Identity); set the spec's activation: sigmoid | none"
        )
    return Setting(_ACTIVATIONS[path_name], "model files")
