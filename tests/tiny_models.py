"""Tiny random Hugging Face models and a locally made WordPiece tokenizer, for tests.

Nothing is downloaded: configs are built here, weights are random (seeded), and the
tokenizer's vocabulary is written by the test.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the a an and or of to in on for with is are was be this that it good bad great "
    "terrible movie film service food triton server model text hello world fast slow "
    "very not love hate ok fine happy sad yes no one two three"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tokenizer(directory: Path) -> None:
    """A BERT WordPiece tokenizer over a small vocabulary, saved as HF files."""
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    letters = sorted({c for w in WORDS for c in w}) + [
        "##" + c for c in sorted({c for w in WORDS for c in w})
    ]
    tokens = SPECIALS + WORDS + letters + list(".,!?'")
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    # the same vocabulary as a WordPiece vocab.txt, for tests that build tokenizers by hand
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.save_pretrained(str(directory))


def _config(model_type: str, num_labels: int, id2label: dict[int, str] | None) -> object:
    import transformers

    common = {"vocab_size": len(SPECIALS) + 200, "pad_token_id": 0}
    if id2label is not None:
        common["id2label"] = id2label
        common["label2id"] = {v: k for k, v in id2label.items()}
    else:
        common["num_labels"] = num_labels
    if model_type == "bert":
        return transformers.BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=512,
            **common,
        )
    if model_type == "roberta":
        return transformers.RobertaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=520,
            type_vocab_size=1,
            bos_token_id=2,
            eos_token_id=3,
            **common,
        )
    if model_type == "distilbert":
        return transformers.DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=512, **common
        )
    layers = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
    }
    ends = {"bos_token_id": 2, "eos_token_id": 3}
    if model_type == "xlm-roberta":
        return transformers.XLMRobertaConfig(
            max_position_embeddings=520, type_vocab_size=1, **ends, **layers, **common
        )
    if model_type == "mpnet":
        return transformers.MPNetConfig(max_position_embeddings=520, **ends, **layers, **common)
    if model_type == "deberta-v2":
        return transformers.DebertaV2Config(
            max_position_embeddings=512,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=32,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            **layers,
            **common,
        )
    if model_type == "electra":
        return transformers.ElectraConfig(
            embedding_size=16, max_position_embeddings=512, **layers, **common
        )
    if model_type == "modernbert":
        return transformers.ModernBertConfig(
            max_position_embeddings=512,
            global_attn_every_n_layers=2,
            local_attention=16,
            cls_token_id=2,
            sep_token_id=3,
            **ends,
            **layers,
            **common,
        )
    raise ValueError(f"no tiny config for {model_type!r}")


# the HF class each task's tiny model is made with (text-embedding: the bare encoder)
_AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "text-reranking": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}


def make_model(
    directory: Path,
    model_type: str = "bert",
    task: str = "text-classification",
    num_labels: int = 3,
    id2label: dict[int, str] | None = None,
    seed: int = 0,
    head_scale: float = 1.0,
) -> Path:
    """Save a tiny random ``model_type`` model for ``task`` plus a tokenizer in ``directory``.

    A text-reranking model has one label. ``head_scale`` multiplies the classifier's weights:
    a random head's logits are nearly equal, a scaled one's are spread (clear winners)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    if task == "text-reranking":
        num_labels, id2label = 1, None
    config = _config(model_type, num_labels, id2label)
    auto = getattr(transformers, _AUTO_CLASSES.get(task, "AutoModel"))
    model = auto.from_config(config)
    if head_scale != 1.0:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.startswith("classifier") and name.endswith("weight"):
                    parameter.mul_(head_scale)
    model.save_pretrained(str(directory))
    write_tokenizer(directory)
    return directory


CORPUS = [
    "the server streams tokens to the client",
    "a tiny model writes random text very fast",
    "triton serves models over http and grpc",
    "the quick brown fox jumps over the lazy dog",
    "hello world , hello triton , hello vllm !",
    "one two three four five six seven eight nine ten",
]
LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def write_bpe_tokenizer(directory: Path, vocab_size: int = 300) -> object:
    """Train a small BPE tokenizer (Metaspace, like SentencePiece) here; save it as HF files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LLAMA_SPECIALS,
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    fast.save_pretrained(str(directory))
    return fast


def make_llama(directory: Path, seed: int = 0) -> Path:
    """A tiny random Llama (head_dim 32, float32) with a locally trained tokenizer."""
    import torch
    import transformers

    tokenizer = write_bpe_tokenizer(directory)
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = transformers.LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    model.save_pretrained(str(directory))
    return directory
