"""Hugging Face -> ONNX with the dynamo exporter, and the tokenizer file beside it.

``load_model`` and ``export_onnx`` are separate from ``builder.parity.check_parity``: export
produces an artifact, parity judges it. The legacy TorchScript exporter is not used: it
produced graphs that were silently wrong on padded batches (a MiniLM graph differed from
PyTorch by 4.9 on a padded batch of two texts; dynamo with eager attention: 6e-5).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import ExportError
from builder.heads import GraphHead
from builder.plan import TOKENIZER_FILE, TokenizerInfo
from builder.registry import Architecture, TaskExport

__all__ = ["OnnxArtifact", "export_onnx", "export_tokenizer", "load_model", "optimize_onnx"]

ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class OnnxArtifact:
    """An exported graph: ``model.onnx`` plus its external data file(s), in ``directory``."""

    directory: Path
    files: tuple[str, ...]
    input_names: tuple[str, ...]
    output_name: str
    opset: int

    @property
    def path(self) -> Path:
        return self.directory / ONNX_FILE


def load_model(source_dir: Path, task: TaskExport) -> Any:
    """The HF model for ``task`` in float32 eval mode, with eager attention (exportable)."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    auto = getattr(transformers, task.auto_class)
    try:
        model, loading = auto.from_pretrained(
            str(source_dir),
            attn_implementation="eager",
            dtype=torch.float32,
            output_loading_info=True,
        )
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source_dir}: cannot load as {task.auto_class}: {exc}") from None
    missing = sorted(loading.get("missing_keys") or ())
    if task.head_class is not None and missing:
        # transformers fills missing weights with random ones: a head that was never trained
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ExportError(
            f"{source_dir}: the checkpoint has no weights for {len(missing)} tensor(s) of "
            f"{type(model).__name__} ({shown}): it is not a {task.task} model (its head "
            "would be random)"
        )
    return model.eval()


def _wrapper(model: Any, architecture: Architecture, task: TaskExport, head: GraphHead) -> Any:
    import torch

    names = architecture.input_names
    mask_name = architecture.mask_name

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            given = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
            # transformers 5 changed positional order: always call with keywords
            out = self.inner(**{n: given[n] for n in names})
            return head.forward(getattr(out, task.raw_output), given[mask_name])  # type: ignore[no-any-return]

    return Wrapped().eval()


def _reraise_interruption(exc: BaseException) -> None:
    """Ctrl-C or SIGTERM that torch wrapped in one of its own errors: let it unwind as itself
    (the CLI then cleans up and exits 130 or 143), not as a failed export."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if not isinstance(cause, Exception):
            raise cause
        cause = cause.__cause__ or cause.__context__


def export_onnx(
    model: Any,
    architecture: Architecture,
    task: TaskExport,
    head: GraphHead,
    opset: int,
    out_dir: Path,
) -> OnnxArtifact:
    """Export ``model`` with ``head`` on top to ``out_dir/model.onnx`` (dynamic batch and
    sequence axes; one output, ``task.output_name``)."""
    import onnx
    import torch

    batch, seq = architecture.example_batch, architecture.example_sequence
    example = {
        i.name: (torch.zeros if i.role == "token_type_ids" else torch.ones)(
            batch, seq, dtype=torch.long
        )
        for i in architecture.inputs
    }
    dynamic = {n: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC} for n in example}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ONNX_FILE
    chatter = io.StringIO()
    # torch logs "torchvision is not installed" per run: not actionable for text models
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _wrapper(model, architecture, task, head),
                (),
                str(target),
                kwargs=example,
                input_names=list(architecture.input_names),
                output_names=[task.output_name],
                dynamic_shapes=dynamic,
                opset_version=opset,
                dynamo=True,
                external_data=True,
                report=False,
                verbose=False,
            )
    except Exception as exc:  # torch.export raises a zoo of internal error types
        _reraise_interruption(exc)
        detail = chatter.getvalue().strip().splitlines()[-5:]
        raise ExportError(
            f"torch.onnx.export failed: {type(exc).__name__}: {exc}\n" + "\n".join(detail)
        ) from None
    graph = onnx.load(str(target), load_external_data=False).graph
    got_inputs = tuple(i.name for i in graph.input)
    got_outputs = tuple(o.name for o in graph.output)
    if got_inputs != architecture.input_names or got_outputs != (task.output_name,):
        raise ExportError(
            f"exported graph has inputs {got_inputs} and outputs {got_outputs}; the registry "
            f"declares {architecture.input_names} and ({task.output_name!r},)"
        )
    files = tuple(sorted(p.name for p in out_dir.iterdir() if p.name.startswith(ONNX_FILE)))
    return OnnxArtifact(out_dir, files, got_inputs, task.output_name, opset)


def optimize_onnx(artifact: OnnxArtifact, out_dir: Path) -> tuple[OnnxArtifact, dict[str, int]]:
    """ONNX Runtime's transformer fusions (attention, skip layer norm, GELU: the rule set
    onnxscript keeps for graphs from the dynamo exporter) applied to ``artifact``, written to
    ``out_dir``; returns the new artifact and how many times each fusion applied. The caller
    judges it with parity before it replaces the plain graph."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    try:
        model = ir.load(str(artifact.path))
        fused, counts = optimize_for_ort(model)
        out_dir.mkdir(parents=True, exist_ok=True)
        ir.save(fused, str(out_dir / ONNX_FILE), external_data=ONNX_FILE + ".data")
    except Exception as exc:  # onnxscript's rewriter raises many internal types
        _reraise_interruption(exc)
        raise ExportError(f"graph optimisation failed: {type(exc).__name__}: {exc}") from None
    files = tuple(sorted(p.name for p in out_dir.iterdir() if p.name.startswith(ONNX_FILE)))
    applied = {name: int(count) for name, count in sorted(counts.items()) if count}
    optimized = OnnxArtifact(
        out_dir, files, artifact.input_names, artifact.output_name, artifact.opset
    )
    return optimized, applied


def export_tokenizer(source_dir: Path, out_dir: Path) -> TokenizerInfo:
    """Write the fast tokenizer as ``out_dir/tokenizer.json``; return its padding facts."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source_dir))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source_dir}: cannot load the tokenizer: {exc}") from None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{source_dir}: the tokenizer has no fast (tokenizers) version")
    if tokenizer.pad_token is None or tokenizer.pad_token_id is None:
        raise ExportError(f"{source_dir}: the tokenizer defines no pad token")
    out_dir.mkdir(parents=True, exist_ok=True)
    backend.save(str(out_dir / TOKENIZER_FILE))
    unk = tokenizer.unk_token_id
    return TokenizerInfo(
        pad_token=str(tokenizer.pad_token),
        pad_id=int(tokenizer.pad_token_id),
        unk_id=None if unk is None else int(unk),
    )
