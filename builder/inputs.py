"""Is a resolved source fit to export? Checked for every model before any export starts.

A source folder passes when

* config.json names a supported architecture and a ``vocab_size``, and a checkpoint with the
  task's head (``architectures``: a ``*ForTokenClassification`` for token-classification, a
  ``*ForSequenceClassification`` with one label for text-reranking);
* ``max_sequence_length`` fits the model's position embeddings (RoBERTa loses
  ``pad_token_id + 1`` of them);
* it holds tokenizer files that transformers loads as a *fast* tokenizer with a pad token,
  whose token ids all exist in the model (id < ``config.vocab_size``; a model may have more
  rows than the tokenizer has tokens, padded embeddings are common) and whose vocabulary is
  more than its special tokens. Without tokenizer files transformers 5 makes an empty
  5-token tokenizer that turns every word into ``[UNK]``: that is refused here, not served.

Each failure names the spec file, the key and the model, and nothing has been written yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.errors import SourceError, SpecError, located
from builder.model_files import HFConfig, read_hf_config
from builder.registry import REGISTRY, Architecture, TaskExport
from builder.sources import ResolvedSource
from builder.spec import ModelSpec, Spec

__all__ = ["TOKENIZER_FILES", "CheckedInputs", "check_inputs"]

# Files from which transformers can build a fast tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def _vocab_size(hf_config: HFConfig) -> int:
    if hf_config.vocab_size < 1:
        raise SourceError(f"{hf_config.path}: vocab_size: must be >= 1, got {hf_config.vocab_size}")
    return hf_config.vocab_size


def _check_positions(
    spec: Spec, model: ModelSpec, architecture: Architecture, hf: HFConfig, max_length: int
) -> None:
    limit = architecture.max_positions(hf)
    if limit is None or max_length <= limit:
        return
    total = hf.max_position_embeddings or limit  # max_positions was computed from it
    why = f"max_position_embeddings {total} in its config.json"
    if limit != total:
        why += f", less {total - limit} because {architecture.model_type} numbers positions after "
        why += "pad_token_id"
    raise SpecError(
        f"{spec.where(model, 'max_sequence_length')}: {max_length} tokens is "
        f"more than the model supports ({limit}: {why}); set max_sequence_length to at most "
        f"{limit}",
        located=True,
    )


def _vocabulary(directory: Path) -> tuple[dict[str, int], set[str]]:
    """(token -> id, special tokens) of the source's tokenizer; fast when tokenizer.json exists.

    Without tokenizer.json, transformers must convert the files into a fast tokenizer
    (the build does the same conversion when it writes the tokenizer model).
    """
    present = [name for name in TOKENIZER_FILES if (directory / name).is_file()]
    if not present:
        raise SourceError(
            f"{directory} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}); "
            "save the tokenizer beside the model: tokenizer.save_pretrained(folder)"
        )
    if "tokenizer.json" in present:
        from tokenizers import Tokenizer

        try:
            loaded = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception for a broken file
            raise SourceError(f"{directory}/tokenizer.json cannot be read: {exc}") from None
        special = {t.content for t in loaded.get_added_tokens_decoder().values() if t.special}
        return loaded.get_vocab(with_added_tokens=True), special
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # transformers raises many types for a broken tokenizer folder
        raise SourceError(
            f"cannot load the tokenizer in {directory}: {type(exc).__name__}: {exc}"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise SourceError(
            f"the tokenizer in {directory} has no fast (tokenizers) version; "
            "Triton's tokenizer model needs tokenizer.json"
        )
    return tokenizer.get_vocab(), set(tokenizer.all_special_tokens)


def _check_tokenizer(directory: Path, vocab_size: int) -> None:
    vocab, special = _vocabulary(directory)
    if not any(token not in special for token in vocab):
        raise SourceError(
            f"the tokenizer in {directory} holds only its {len(vocab)} special "
            "tokens, so every word would become unknown; save the model's real tokenizer "
            "beside it: tokenizer.save_pretrained(folder)"
        )
    top = max(vocab.values())
    if top >= vocab_size:
        raise SourceError(
            f"the tokenizer in {directory} does not match the model: it has "
            f"{len(vocab)} tokens with ids up to {top}, but the model's config.json has "
            f"vocab_size {vocab_size}; use the tokenizer the model was trained with"
        )


def _check_head(hf_config: HFConfig, task: TaskExport) -> None:
    """The checkpoint has ``task``'s head (config.json's ``architectures`` says which class
    saved it), and a reranker has one label: transformers would load any encoder with a
    random head, and serve noise."""
    saved = hf_config.raw.get("architectures")
    classes = [str(name) for name in saved] if isinstance(saved, list) else []
    head = task.head_class
    if head is not None and classes and not any(name.endswith(head) for name in classes):
        raise SourceError(
            f"{hf_config.path}: architectures {classes}: the checkpoint has no "
            f"{task.task} head (a *{head} class); use a {task.task} model, or serve this one "
            "as a task its head fits"
        )
    if task.output == "score" and hf_config.num_labels != 1:
        raise SourceError(
            f"{hf_config.path}: {hf_config.num_labels} labels: a {task.task} model scores each "
            "pair with one logit (num_labels 1); serve a model with several labels as "
            "text-classification with pair: true"
        )


@dataclass(frozen=True)
class CheckedInputs:
    """A source fit to export: its config.json and its registry entries, looked up once."""

    hf_config: HFConfig
    architecture: Architecture
    task: TaskExport


def check_inputs(
    spec: Spec, model: ModelSpec, source: ResolvedSource, max_length: int
) -> CheckedInputs:
    """Raise a located BuildError unless ``source`` can be exported for ``model`` with texts
    of up to ``max_length`` tokens."""
    where = spec.where(model, "source")
    with located(where):
        hf_config = read_hf_config(source.directory)
        architecture = REGISTRY.architecture(hf_config.model_type)
        task = REGISTRY.task(model.task)
        vocab_size = _vocab_size(hf_config)
        _check_head(hf_config, task)
    _check_positions(spec, model, architecture, hf_config, max_length)
    with located(where):
        _check_tokenizer(source.directory, vocab_size)
    return CheckedInputs(hf_config, architecture, task)
