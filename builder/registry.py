"""What the exporter knows per architecture and per task (the Optimum idea, kept small).

An architecture says which tensors its forward takes and the role of each (token ids,
attention mask, token type ids), so export, parity and the served tokenizer take each
tensor from its role, never from its name; a task says which HF class to load, which output
to export and what shape it has. Both are plain objects in a plain registry, built
explicitly below; a failed lookup lists what is supported. Adding an architecture is one
``Architecture`` line here and its tiny model in ``tests/tiny_models.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from builder.errors import ExportError

if TYPE_CHECKING:
    from builder.model_files import HFConfig

__all__ = [
    "ATTENTION_MASK",
    "REGISTRY",
    "TOKEN_IDS",
    "TOKEN_TYPE_IDS",
    "Architecture",
    "ExportRegistry",
    "ModelInput",
    "TaskExport",
]

Role = Literal["token_ids", "attention_mask", "token_type_ids"]


@dataclass(frozen=True)
class ModelInput:
    """One tensor the model's forward takes: its name, its role, and the ``tokenizers``
    ``Encoding`` field the served tokenizer fills it from."""

    name: str
    role: Role
    encoding_field: str


TOKEN_IDS = ModelInput("input_ids", "token_ids", "ids")
ATTENTION_MASK = ModelInput("attention_mask", "attention_mask", "attention_mask")
TOKEN_TYPE_IDS = ModelInput("token_type_ids", "token_type_ids", "type_ids")
_IDS_AND_MASK = (TOKEN_IDS, ATTENTION_MASK)


@dataclass(frozen=True)
class Architecture:
    """An encoder family, keyed by ``config.json``'s ``model_type``."""

    model_type: str
    inputs: tuple[ModelInput, ...]
    # Dummy shapes for the export example; parity runs on different ones on purpose.
    example_batch: int = 2
    example_sequence: int = 8
    # RoBERTa numbers positions from pad_token_id + 1, so that many positions are unusable.
    positions_after_pad: bool = False

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    def named(self, role: Role) -> str | None:
        """The name of the input with ``role``, or None when the model takes none."""
        return next((i.name for i in self.inputs if i.role == role), None)

    @property
    def mask_name(self) -> str:
        name = self.named("attention_mask")
        if name is None:
            raise ExportError(f"architecture {self.model_type!r} declares no attention mask")
        return name

    def max_positions(self, hf_config: HFConfig) -> int | None:
        """How many tokens one text may have, or None when config.json does not say."""
        total = hf_config.max_position_embeddings
        if total is None:
            return None
        if self.positions_after_pad:
            pad = hf_config.pad_token_id
            total -= (pad if pad is not None else 1) + 1
        return total


Output = Literal["hidden", "labels", "token_labels", "score"]


@dataclass(frozen=True)
class TaskExport:
    """What one task exports from the HF model: which class to load, which of its outputs the
    graph's head reads (``builder.heads``), and the graph's final output."""

    task: str
    auto_class: str  # attribute name in ``transformers``
    raw_output: str  # the HF output the head reads: "last_hidden_state" | "logits"
    output_name: str  # the exported graph's one output, as served
    # the output per batch item: [hidden] | [labels] | [tokens, labels] | [1]
    output: Output = "labels"
    # the config.json ``architectures`` suffix of a checkpoint that has this task's head
    # (None: any encoder); a checkpoint without it would get a random head from transformers
    head_class: str | None = None
    rtol: float = 1e-4  # parity's default relative tolerance (export.rtol overrides it)

    def output_dims(self, hf_config: HFConfig) -> tuple[int, ...]:
        """Dims of the graph's output per batch item."""
        if self.output == "hidden":
            return (hf_config.hidden_size,)
        if self.output == "token_labels":
            return (-1, hf_config.num_labels)
        if self.output == "score":
            return (1,)
        return (hf_config.num_labels,)


class ExportRegistry:
    """Architectures and tasks the exporter supports."""

    def __init__(self, architectures: list[Architecture], tasks: list[TaskExport]) -> None:
        self._architectures = {a.model_type: a for a in architectures}
        self._tasks = {t.task: t for t in tasks}

    def architecture(self, model_type: str) -> Architecture:
        try:
            return self._architectures[model_type]
        except KeyError:
            raise ExportError(
                f"architecture {model_type!r} is not supported for export; supported: "
                + ", ".join(sorted(self._architectures))
            ) from None

    def task(self, task: str) -> TaskExport:
        try:
            return self._tasks[task]
        except KeyError:
            raise ExportError(
                f"task {task!r} is not supported for export; supported: "
                + ", ".join(sorted(self._tasks))
            ) from None

    @property
    def model_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._architectures))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted(self._tasks))


REGISTRY = ExportRegistry(
    architectures=[
        Architecture("bert", (*_IDS_AND_MASK, TOKEN_TYPE_IDS)),
        Architecture("roberta", _IDS_AND_MASK, positions_after_pad=True),
        Architecture("distilbert", _IDS_AND_MASK),
        Architecture("xlm-roberta", _IDS_AND_MASK, positions_after_pad=True),
        Architecture("mpnet", _IDS_AND_MASK, positions_after_pad=True),
        Architecture("deberta-v2", _IDS_AND_MASK),
        Architecture("electra", (*_IDS_AND_MASK, TOKEN_TYPE_IDS)),
        Architecture("modernbert", _IDS_AND_MASK),
    ],
    tasks=[
        TaskExport("text-embedding", "AutoModel", "last_hidden_state", "EMBEDDING", "hidden"),
        TaskExport(
            "text-classification",
            "AutoModelForSequenceClassification",
            "logits",
            "SCORES",
            head_class="ForSequenceClassification",
        ),
        TaskExport(
            "text-reranking",
            "AutoModelForSequenceClassification",
            "logits",
            "SCORE",
            "score",
            head_class="ForSequenceClassification",
        ),
        TaskExport(
            "token-classification",
            "AutoModelForTokenClassification",
            "logits",
            "TOKEN_SCORES",
            "token_labels",
            head_class="ForTokenClassification",
        ),
    ],
)
