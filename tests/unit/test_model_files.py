"""Reading what a source folder says about itself (builder.model_files): config.json, and
sentence-transformers folders as sentence-transformers itself writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import SourceError
from builder.model_files import (
    SentenceTransformersFolder,
    Setting,
    read_hf_config,
    read_sentence_transformers,
    resolve_embedding,
)
from tests.tiny_models import make_model


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_read_hf_config_of_a_real_model(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "bert", "text-classification", id2label={0: "no", 1: "yes"})
    config = read_hf_config(folder)
    assert (config.model_type, config.hidden_size, config.vocab_size) == ("bert", 32, 205)
    assert (config.max_position_embeddings, config.pad_token_id) == (512, 0)
    assert (config.labels, config.num_labels) == (("no", "yes"), 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "model_type: missing"),
        ({"model_type": "bert", "hidden_size": 8}, "none of vocab_size is set"),
        ({"model_type": "bert", "vocab_size": 9}, "none of hidden_size, dim, d_model is set"),
        ({"model_type": "bert", "vocab_size": "9", "hidden_size": 8}, "vocab_size: expected an"),
        (
            {
                "model_type": "bert",
                "vocab_size": 9,
                "hidden_size": 8,
                "id2label": {"0": "a", "2": "b"},
            },
            "id2label: ids must be 0..1, got [0, 2]",
        ),
        ([], "expected a JSON object"),
    ],
)
def test_read_hf_config_names_the_file_and_key(tmp_path: Path, data: Any, message: str) -> None:
    write(tmp_path / "config.json", data)
    with pytest.raises(SourceError) as info:
        read_hf_config(tmp_path)
    assert str(info.value) == f"{tmp_path / 'config.json'}: {message}" or message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "config.json"))


def test_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(SourceError, match=r"config.json: not valid JSON \(line 1"):
        read_hf_config(tmp_path)


def save_sentence_transformer(
    folder: Path, pooling: str, normalize: bool, dense: bool = False
) -> Path:
    """A sentence-transformers folder saved by sentence-transformers itself."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    make_model(folder / "hf", "bert", "text-embedding")
    transformer = Transformer(str(folder / "hf"), max_seq_length=64)
    modules: list[Any] = [transformer, Pooling(32, pooling_mode=pooling)]
    if dense:
        modules.append(Dense(32, 16))
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder / "st"))
    return folder / "st"


@pytest.mark.parametrize(
    ("pooling", "normalize"), [("cls", True), ("mean", False), ("max", True), ("lasttoken", False)]
)
def test_a_folder_saved_by_sentence_transformers(
    tmp_path: Path, pooling: str, normalize: bool
) -> None:
    from sentence_transformers import SentenceTransformer

    folder = save_sentence_transformer(tmp_path, pooling, normalize)
    found = read_sentence_transformers(folder)
    assert found is not None
    assert (found.pooling, found.normalize, found.max_seq_length) == (pooling, normalize, 64)
    assert SentenceTransformer(str(folder), device="cpu").max_seq_length == 64


def test_a_dense_module_is_named(tmp_path: Path) -> None:
    folder = save_sentence_transformer(tmp_path, "mean", True, dense=True)
    with pytest.raises(SourceError) as info:
        read_sentence_transformers(folder)
    assert "module 2 (Dense at '2_Dense') is not served" in str(info.value)
    assert str(info.value).startswith(str(folder / "modules.json"))


def test_a_plain_folder_is_not_a_sentence_transformers_folder(tmp_path: Path) -> None:
    assert read_sentence_transformers(make_model(tmp_path, "bert", "text-embedding")) is None


def legacy_folder(tmp_path: Path, flags: dict[str, bool]) -> Path:
    write(
        tmp_path / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
        ],
    )
    write(tmp_path / "1_Pooling" / "config.json", {"word_embedding_dimension": 32, **flags})
    return tmp_path


def test_the_boolean_pooling_flags_of_older_folders(tmp_path: Path) -> None:
    folder = legacy_folder(
        tmp_path, {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    )
    assert read_sentence_transformers(folder) == SentenceTransformersFolder(
        ("Transformer", "Pooling"), "cls", False, None
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"pooling_mode_weightedmean_tokens": True}, "pooling mode 'weightedmean' is not served"),
        (
            {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True},
            "pooling modes ['cls', 'mean']: exactly one is served",
        ),
        ({}, "pooling modes none: exactly one is served"),
    ],
)
def test_pooling_we_cannot_serve_is_named(
    tmp_path: Path, flags: dict[str, bool], message: str
) -> None:
    with pytest.raises(SourceError) as info:
        read_sentence_transformers(legacy_folder(tmp_path, flags))
    assert message in str(info.value)
    assert "1_Pooling" in str(info.value)


def test_resolve_embedding_records_where_each_value_came_from() -> None:
    folder = SentenceTransformersFolder(("Transformer", "Pooling"), "cls", False, 128)
    settings = resolve_embedding(None, None, None, folder, 256)
    assert settings.pooling == Setting("cls", "model files")
    assert settings.normalize == Setting(False, "model files")
    assert settings.max_sequence_length == Setting(128, "model files")
    overridden = resolve_embedding("mean", True, 64, folder, 256)
    assert overridden.as_manifest() == {
        "pooling": {"value": "mean", "from": "spec"},
        "normalize": {"value": True, "from": "spec"},
        "max_sequence_length": {"value": 64, "from": "spec"},
    }
    plain = resolve_embedding(None, None, None, None, 256)
    assert plain.as_manifest()["pooling"] == {"value": "mean", "from": "default"}
    assert plain.normalize == Setting(True, "default")


def test_the_real_minilm_folder() -> None:
    from tests.integration.conftest import minilm_source

    found = read_sentence_transformers(minilm_source())
    assert found == SentenceTransformersFolder(
        ("Transformer", "Pooling", "Normalize"), "mean", True, 256
    )
    config = read_hf_config(minilm_source())
    assert (config.model_type, config.hidden_size, config.max_position_embeddings) == (
        "bert",
        384,
        512,
    )
