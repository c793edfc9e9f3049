"""Set keys of one model entry in a spec file's text, keeping everything else as written.

A spec is YAML a person wrote; a round trip through a YAML library drops or moves comments
and reflows the rest. Here the text is composed with PyYAML, whose nodes know where they
start and end, and only the spans that change are rewritten:

- a key the entry has gets its value replaced in place (a comment after it stays);
- a key it lacks is added on a line of its own after the mapping's last key, at that key's
  indentation, or before the closing brace of a flow mapping (``{name: x, threads: 1}``);
- a missing or null parent (``tokenizer``, ``dynamic_batching: null``) becomes a flow mapping
  holding the key (``tokenizer: {bucket: 16}``).

Values are written in flow style (``2``, ``null``, ``[8, 16]``). Keys that reach the entry only
through a YAML alias or merge are not edited where the anchor is (that would change other
entries): ``set_keys`` refuses an alias, and adds an own key over a merged one. The caller
loads the result to check it (``builder.tune.write_winner``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode

from builder.errors import SpecError

__all__ = ["flow", "set_keys"]

_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"


def flow(value: Any) -> str:
    """``value`` as a one-line YAML flow value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML flow scalar
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(flow(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} into a spec")


def _leaves(
    changes: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in changes.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _own_pair(mapping: MappingNode, key: str) -> tuple[Node, Node] | None:
    for key_node, value_node in mapping.value:
        if key_node.tag != _MERGE and isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _end(node: Node) -> int:
    """Where the text of ``node`` really ends: a block collection's end mark lies at the next
    token, past trailing comments and blank lines, so follow it to its last item."""
    while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    return int(node.end_mark.index)


def _line_end(text: str, start: int, end: int) -> int:
    """The end of the line holding the last character of text[start:end]."""
    last = max(start, end - 1)
    if last < len(text) and text[last] == "\n":
        return last
    found = text.find("\n", last)
    return len(text) if found < 0 else found


def _nested(path: Sequence[str], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def _insert(text: str, mapping: MappingNode, key: str, value: Any) -> str:
    line = f"{key}: {flow(value)}"
    if mapping.flow_style:
        if mapping.value:
            at = _end(mapping.value[-1][1])
            return text[:at] + ", " + line + text[at:]
        at = int(mapping.end_mark.index) - 1  # the closing brace of `{}`
        return text[:at] + line + text[at:]
    first_key = mapping.value[0][0]
    indent = " " * int(first_key.start_mark.column)
    at = _line_end(text, int(first_key.start_mark.index), _end(mapping.value[-1][1]))
    return text[:at] + "\n" + indent + line + text[at:]


def _replace(text: str, key_node: Node, node: Node, value: Any) -> str:
    start, end = int(node.start_mark.index), _end(node)
    if not isinstance(node, CollectionNode) or node.flow_style:
        written = flow(value)
        if start == end:  # an empty value (`key:`): it starts right after the colon
            written = " " + written
        return text[:start] + written + text[end:]
    # a block collection: the value moves up beside its key; a comment on the key's line stays
    key_end = int(key_node.end_mark.index)
    between = text[key_end:start]
    comment = between[between.index("#") :].split("\n", 1)[0].rstrip() if "#" in between else ""
    return text[:key_end] + ": " + flow(value) + (f"  {comment}" if comment else "") + text[end:]


def _set(text: str, where: str, index: int, path: tuple[str, ...], value: Any) -> str:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    models = _own_pair(root, "models") if isinstance(root, MappingNode) else None
    if models is None or not isinstance(models[1], SequenceNode) or index >= len(models[1].value):
        raise SpecError(f"{where}: no models[{index}] to write into")
    entry = models[1].value[index]
    if not isinstance(entry, MappingNode):
        raise SpecError(f"{where}: models[{index}] is not a mapping")
    span = (int(entry.start_mark.index), int(entry.end_mark.index))
    node: MappingNode = entry
    for depth, key in enumerate(path):
        pair = _own_pair(node, key)
        rest = _nested(path[depth + 1 :], value)
        if pair is None:
            return _insert(text, node, key, rest)
        key_node, child = pair
        if not span[0] <= int(child.start_mark.index) <= span[1]:
            # an alias: its node is the anchor's, elsewhere; editing it would change others
            raise SpecError(
                f"{where}: models[{index}].{'.'.join(path[: depth + 1])} is a YAML alias "
                "(its anchor's value is shared)"
            )
        if depth == len(path) - 1 or child.tag == _NULL:
            return _replace(text, key_node, child, rest)
        if not isinstance(child, MappingNode):
            raise SpecError(
                f"{where}: models[{index}].{'.'.join(path[: depth + 1])} is not a mapping"
            )
        node = child
    raise SpecError(f"{where}: nothing to set")  # an empty path


def set_keys(text: str, model_index: int, changes: Mapping[str, Any], where: str = "spec") -> str:
    """``text`` with ``changes`` (nested by key: ``{"tokenizer": {"bucket": 16}}``) written into
    ``models[model_index]``; ``where`` names the file in errors."""
    for path, value in _leaves(changes):
        text = _set(text, where, model_index, path, value)
    return text
