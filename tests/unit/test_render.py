"""builder.render: string escaping, golden configs, template fields, validate_config.

The golden files in tests/golden/ are the reviewed configs; after an intended change, rewrite
them with ``python -m tests.unit.test_render`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any

import jinja2
import pytest
from google.protobuf import text_format
from jinja2 import meta, nodes
from pydantic import BaseModel
from tritonclient.grpc import model_config_pb2

from builder.errors import RenderError
from builder.model_files import HFConfig, hf_config_from
from builder.plan import (
    EnsembleStep,
    MemberPlan,
    ModelPlan,
    TensorSpec,
    TokenizerInfo,
    VllmPlan,
    plan_model,
)
from builder.render import TEMPLATES_DIR, pbtxt_string, render_model, validate_config
from builder.spec import parse_spec

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"

GOLDEN_SPEC = """\
models:
  - name: minilm
    task: text-embedding
    source: ./minilm
    max_sequence_length: 256
    max_batch_size: 32
    dynamic_batching: {max_queue_delay_us: 1000, preferred_batch_sizes: [8, 16]}
    instances: 2
    pooling: mean
    normalize: true
  - name: sentiment
    task: text-classification
    source: ./sentiment
    target: gpu
    labels: [negative, positive]
  - name: nli
    task: text-classification
    pair: true
    source: ./nli
    max_sequence_length: 128
  - name: reranker
    task: text-reranking
    source: ./reranker
    max_sequence_length: 512
  - name: ner
    task: token-classification
    source: ./ner
    aggregation: first
    max_sequence_length: 128
"""


def hf(config: dict[str, Any]) -> HFConfig:
    return hf_config_from({"vocab_size": 100, **config}, Path("config.json"))


HF_CONFIGS = {
    "minilm": {"model_type": "bert", "hidden_size": 384},
    "sentiment": {
        "model_type": "distilbert",
        "dim": 768,
        "id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
    },
    "nli": {
        "model_type": "bert",
        "hidden_size": 32,
        "id2label": {"0": "entailment", "1": "neutral", "2": "contradiction"},
    },
    "reranker": {"model_type": "xlm-roberta", "hidden_size": 32, "num_labels": 1},
    "ner": {
        "model_type": "distilbert",
        "dim": 32,
        "id2label": {"0": "O", "1": "B-PER", "2": "I-PER", "3": "B-LOC", "4": "I-LOC"},
    },
}
MEMBERS = {
    "minilm": ["minilm", "minilm_onnx", "minilm_tokenizer"],
    "sentiment": ["sentiment", "sentiment_onnx", "sentiment_postprocess", "sentiment_tokenizer"],
    "nli": ["nli", "nli_onnx", "nli_postprocess", "nli_tokenizer"],
    "reranker": ["reranker", "reranker_onnx", "reranker_tokenizer"],
    "ner": ["ner", "ner_onnx", "ner_postprocess", "ner_tokenizer"],
}
GOLDEN_MEMBERS = [name for names in MEMBERS.values() for name in names]


def render_golden_models() -> dict[str, str]:
    spec = parse_spec(GOLDEN_SPEC, Path("models.yaml"))
    configs: dict[str, str] = {}
    for model in spec.models:
        info = TokenizerInfo(pad_token="[PAD]", pad_id=0, unk_id=100)
        plan = plan_model(spec, model, hf(HF_CONFIGS[model.name]), info)
        configs.update(render_model(plan, spec.path.name))
    return configs


def classifier_plan(labels: list[str]) -> ModelPlan:
    entry = {"name": "clf", "task": "text-classification", "source": "./m", "labels": labels}
    spec = parse_spec(json.dumps({"models": [entry]}), Path("models.yaml"))
    info = TokenizerInfo(pad_token="[PAD]", pad_id=0)
    config = hf({"model_type": "bert", "hidden_size": 32, "num_labels": len(labels)})
    return plan_model(spec, spec.models[0], config, info)


def parse_config(text: str) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    return config


# --- pbtxt_string ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ("", '""'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("two\nlines", r'"two\nlines"'),
        ("cr\rlf", r'"cr\rlf"'),
        ("tab\there", r'"tab\there"'),
        ("\x00\x01\x1b\x1f\x7f", r'"\000\001\033\037\177"'),
        ("très 日本 🙂", '"très 日本 🙂"'),
        (42, '"42"'),
    ],
)
def test_pbtxt_string_escapes(value: object, literal: str) -> None:
    assert pbtxt_string(value) == literal


HOSTILE = [
    'a"b\\c\nd',
    "plain",
    "",
    '"',
    "\\",
    "\\n is not a newline",
    "end with backslash\\",
    "\t\r\n\x00\x07\x1f\x7f",
    '} ] parameters { key: "x"',
    "# not a comment",
    "très 日本 🙂 \u00a0",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_string_round_trips_through_protobuf(value: str) -> None:
    text = (
        f'name: "m"\nparameters {{ key: "k" value: {{ string_value: {pbtxt_string(value)} }} }}\n'
    )
    config = parse_config(text)
    assert config.parameters["k"].string_value == value
    assert list(config.parameters) == ["k"]


def test_hostile_labels_round_trip_through_render() -> None:
    labels = ['a"b\\c\nd', "x\ty", "日本", "\\"]
    configs = render_model(classifier_plan(labels), "models.yaml")
    post = validate_config(configs["clf_postprocess"], "clf_postprocess")
    ensemble = validate_config(configs["clf"], "clf")
    assert json.loads(post.parameters["labels"].string_value) == labels
    assert json.loads(ensemble.parameters["labels"].string_value) == labels


@pytest.mark.parametrize("separator", ["\u2028", "\u0085"])
def test_labels_with_unicode_line_separators_render(separator: str) -> None:
    labels = [f"a{separator}b", "c"]
    configs = render_model(classifier_plan(labels), "models.yaml")
    post = validate_config(configs["clf_postprocess"], "clf_postprocess")
    assert json.loads(post.parameters["labels"].string_value) == labels


# --- golden configs -------------------------------------------------------------------------


def test_rendered_models_are_the_expected_set() -> None:
    configs = render_golden_models()
    assert sorted(configs) == sorted(GOLDEN_MEMBERS)
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.pbtxt")) == sorted(configs)


@pytest.mark.parametrize("name", GOLDEN_MEMBERS)
def test_config_matches_golden(name: str) -> None:
    text = render_golden_models()[name]
    golden = (GOLDEN_DIR / f"{name}.pbtxt").read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            golden.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"golden/{name}.pbtxt",
            "rendered",
        )
    )
    assert text == golden, diff


@pytest.mark.parametrize("name", GOLDEN_MEMBERS)
def test_config_parses_and_names_itself(name: str) -> None:
    config = parse_config(render_golden_models()[name])
    assert config.name == name


def test_golden_configs_mean_what_triton_reads() -> None:
    configs = {name: parse_config(text) for name, text in render_golden_models().items()}
    ensemble = configs["minilm"]
    assert ensemble.platform == "ensemble"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        "minilm_tokenizer",
        "minilm_onnx",
    ]
    assert all(s.model_version == -1 for s in ensemble.ensemble_scheduling.step)
    onnx = configs["minilm_onnx"]
    assert onnx.backend == "onnxruntime"
    assert onnx.default_model_filename == "model.onnx"
    assert list(onnx.dynamic_batching.preferred_batch_size) == [8, 16]
    assert onnx.dynamic_batching.max_queue_delay_microseconds == 1000
    assert [(g.count, g.kind) for g in onnx.instance_group] == [
        (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    ]
    assert (onnx.output[0].name, list(onnx.output[0].dims)) == ("EMBEDDING", [384])
    tokenizer = configs["minilm_tokenizer"]
    assert tokenizer.HasField("dynamic_batching")
    assert tokenizer.dynamic_batching.max_queue_delay_microseconds == 0
    assert tokenizer.parameters["bucket"].string_value == "1"

    sentiment_onnx = configs["sentiment_onnx"]
    assert [(g.count, g.kind) for g in sentiment_onnx.instance_group] == [
        (1, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    ]
    assert [i.name for i in sentiment_onnx.input] == ["input_ids", "attention_mask"]
    assert configs["sentiment_postprocess"].output[0].data_type == model_config_pb2.TYPE_STRING
    labels = configs["sentiment"].parameters["labels"].string_value
    assert json.loads(labels) == ["negative", "positive"]


# --- templates use only fields that exist ---------------------------------------------------

# The object each template variable (or macro loop variable) holds.
TEMPLATE_ROOTS = {"model": MemberPlan, "plan": ModelPlan, "step": EnsembleStep, "t": TensorSpec}
# Templates whose variables hold other objects than TEMPLATE_ROOTS says.
ROOT_OVERRIDES: dict[str, dict[str, type]] = {"vllm.pbtxt.j2": {"plan": VllmPlan}}


def _field_types(cls: type) -> dict[str, Any]:
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    assert issubclass(cls, BaseModel)
    return {name: info.annotation for name, info in cls.model_fields.items()}


def _object_class(annotation: Any) -> type | None:
    """The dataclass or pydantic class inside ``X``, ``X | None``, else None."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    for option in options or (annotation,):
        if isinstance(option, type) and (
            dataclasses.is_dataclass(option) or issubclass(option, BaseModel)
        ):
            return option
    return None


def _attribute_chains(node: nodes.Getattr) -> tuple[str, list[str]] | None:
    """``model.dynamic_batching.max_queue_delay_us`` -> ("model", [dynamic_batching, ...])."""
    names: list[str] = []
    current: nodes.Node = node
    while isinstance(current, nodes.Getattr):
        names.insert(0, current.attr)
        current = current.node
    if isinstance(current, nodes.Name):
        return current.name, names
    return None


def _template_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    env.filters["pbstr"] = pbtxt_string
    return env


def _template_attributes() -> list[tuple[str, str, list[str]]]:
    env = _template_env()
    found = []
    for path in sorted(TEMPLATES_DIR.glob("*.j2")):
        ast = env.parse(path.read_text(encoding="utf-8"))
        for node in ast.find_all(nodes.Getattr):
            chain = _attribute_chains(node)
            if chain is not None:
                found.append((path.name, *chain))
    return found


def test_templates_use_only_existing_fields() -> None:
    uses = _template_attributes()
    roots = {root for _, root, _ in uses}
    assert roots == set(TEMPLATE_ROOTS), "a template reads attributes of an unknown variable"
    for template, root, chain in uses:
        cls: type | None = ROOT_OVERRIDES.get(template, {}).get(root, TEMPLATE_ROOTS[root])
        for attr in chain:
            assert cls is not None, f"{template}: {root}.{'.'.join(chain)} goes past a value"
            fields = _field_types(cls)
            assert attr in fields, f"{template}: {root}.{'.'.join(chain)}: {cls.__name__}.{attr}"
            cls = _object_class(fields[attr])


def test_templates_walk_reaches_nested_objects() -> None:
    chains = {(root, ".".join(chain)) for _, root, chain in _template_attributes()}
    assert ("plan", "spec.name") in chains
    assert ("model", "dynamic_batching.preferred_batch_sizes") in chains
    assert ("t", "dims") in chains


@pytest.mark.parametrize(
    ("template", "variables"),
    [
        ("model.pbtxt.j2", {"model", "spec_file", "source_model"}),
        ("ensemble.pbtxt.j2", {"plan", "spec_file", "source_model"}),
        ("vllm.pbtxt.j2", {"plan", "spec_file", "source_model"}),
        ("_tensors.j2", set()),
    ],
)
def test_template_variables_are_the_ones_render_passes(template: str, variables: set[str]) -> None:
    ast = _template_env().parse((TEMPLATES_DIR / template).read_text(encoding="utf-8"))
    assert meta.find_undeclared_variables(ast) == variables


# --- validate_config ------------------------------------------------------------------------


def test_validate_config_returns_the_parsed_config() -> None:
    config = validate_config('name: "m"\nmax_batch_size: 4\n', "m")
    assert (config.name, config.max_batch_size) == ("m", 4)


@pytest.mark.parametrize(
    "text",
    [
        'name: "m"\nmax_batch_sise: 4\n',  # unknown field
        'name: "m"\ninstance_group [ { kind: KIND_TPU } ]\n',  # unknown enum value
        'name: "m"\nmax_batch_size: "4"\n',  # wrong type
        'name: "m\n',  # unterminated string
    ],
)
def test_validate_config_rejects_invalid_text(text: str) -> None:
    with pytest.raises(RenderError, match=r"^model 'm': rendered config.pbtxt is invalid: "):
        validate_config(text, "m")


def test_validate_config_rejects_a_name_mismatch() -> None:
    with pytest.raises(RenderError) as caught:
        validate_config('name: "other"\n', "m")
    assert str(caught.value) == "model 'm': rendered config.pbtxt names model 'other'"


def test_validate_config_rejects_a_missing_name() -> None:
    with pytest.raises(RenderError) as caught:
        validate_config("max_batch_size: 1\n", "m")
    assert str(caught.value) == "model 'm': rendered config.pbtxt names model ''"


def write_goldens() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, text in render_golden_models().items():
        (GOLDEN_DIR / f"{name}.pbtxt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_goldens()
