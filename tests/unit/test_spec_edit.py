"""builder.spec_edit: keys written into a spec's text, everything else left as written."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from builder.errors import SpecError
from builder.spec_edit import flow, set_keys

BLOCK = """\
repository: repo   # where it goes
models:
  # the first model
  - name: tiny
    task: text-embedding
    source: ./m   # a folder
    instances: 1  # one for now
    dynamic_batching:
      max_queue_delay_us: 0
      preferred_batch_sizes:   # sizes
        - 4
        - 8
    # a comment after the entry

  - name: other
    task: text-embedding
    source: ./m
    instances: 3
"""


def entries(text: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load(text)["models"])


@pytest.mark.parametrize(
    ("value", "written"),
    [(None, "null"), (True, "true"), (3, "3"), (0.5, "0.5"), ("a: b", '"a: b"'), ((), "[]")],
)
def test_flow_scalars(value: object, written: str) -> None:
    assert flow(value) == written


def test_flow_collections() -> None:
    value = {"max_queue_delay_us": 100, "preferred_batch_sizes": (8, 16)}
    assert flow(value) == "{max_queue_delay_us: 100, preferred_batch_sizes: [8, 16]}"
    assert yaml.safe_load(flow(value)) == {
        "max_queue_delay_us": 100,
        "preferred_batch_sizes": [8, 16],
    }


def test_block_entry_values_replaced_and_keys_added() -> None:
    changes = {
        "instances": 2,
        "dynamic_batching": {"max_queue_delay_us": 1000, "preferred_batch_sizes": [8, 16]},
        "tokenizer": {"bucket": 16},
        "threads": 1,
    }
    edited = set_keys(BLOCK, 0, changes, "models.yaml")
    assert edited == (
        "repository: repo   # where it goes\n"
        "models:\n"
        "  # the first model\n"
        "  - name: tiny\n"
        "    task: text-embedding\n"
        "    source: ./m   # a folder\n"
        "    instances: 2  # one for now\n"
        "    dynamic_batching:\n"
        "      max_queue_delay_us: 1000\n"
        "      preferred_batch_sizes: [8, 16]  # sizes\n"
        "    tokenizer: {bucket: 16}\n"
        "    threads: 1\n"
        "    # a comment after the entry\n"
        "\n"
        "  - name: other\n"
        "    task: text-embedding\n"
        "    source: ./m\n"
        "    instances: 3\n"
    )


def test_the_second_entry_and_a_nested_key_added_to_a_block_mapping() -> None:
    edited = set_keys(BLOCK, 1, {"instances": 1, "dynamic_batching": {"max_queue_delay_us": 5}})
    first, second = entries(edited)
    assert first == entries(BLOCK)[0]
    assert second["instances"] == 1 and second["dynamic_batching"] == {"max_queue_delay_us": 5}
    edited = set_keys(BLOCK, 0, {"dynamic_batching": {"extra": 7}})
    assert (
        "      preferred_batch_sizes:   # sizes\n        - 4\n        - 8\n      extra: 7\n"
        in edited
    )


def test_flow_entries() -> None:
    text = "models:\n  - {name: one, threads: 1}\n  - {name: two}\n  - {}\n"
    edited = set_keys(text, 0, {"threads": None, "tokenizer": {"bucket": 8}})
    assert edited.splitlines()[1] == "  - {name: one, threads: null, tokenizer: {bucket: 8}}"
    edited = set_keys(edited, 1, {"instances": 2})
    assert edited.splitlines()[2] == "  - {name: two, instances: 2}"
    assert set_keys(edited, 2, {"instances": 2}).splitlines()[3] == "  - {instances: 2}"


@pytest.mark.parametrize(
    "parent", ["dynamic_batching: null", "dynamic_batching: ~", "dynamic_batching:"]
)
def test_a_null_parent_becomes_a_mapping(parent: str) -> None:
    text = f"models:\n- name: tiny\n  {parent}\n- name: b"
    edited = set_keys(text, 0, {"dynamic_batching": {"max_queue_delay_us": 9}})
    assert entries(edited) == [
        {"name": "tiny", "dynamic_batching": {"max_queue_delay_us": 9}},
        {"name": "b"},
    ]


def test_merge_keys_get_an_own_key() -> None:
    text = "base: &base {instances: 1}\nmodels:\n  - <<: *base\n    name: tiny\n"
    edited = set_keys(text, 0, {"instances": 2})
    assert edited.startswith("base: &base {instances: 1}\n")
    assert entries(edited) == [{"name": "tiny", "instances": 2}]


def test_an_alias_is_refused() -> None:
    text = "x: &db {max_queue_delay_us: 5}\nmodels:\n  - name: tiny\n    dynamic_batching: *db\n"
    with pytest.raises(SpecError, match=r"models\[0\].dynamic_batching is a YAML alias"):
        set_keys(text, 0, {"dynamic_batching": {"max_queue_delay_us": 6}}, "spec.yaml")


def test_no_such_entry() -> None:
    with pytest.raises(SpecError, match=r"spec.yaml: no models\[5\]"):
        set_keys(BLOCK, 5, {"instances": 2}, "spec.yaml")
