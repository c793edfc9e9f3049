"""Check an InferenceService YAML file against the ``kserve`` package's model classes.

Run as a script in its own interpreter (``python tests/kserve_schema.py FILE``): importing
``kserve`` registers KServe's ``inference.*`` gRPC protos, which collide in protobuf's default
descriptor pool with tritonclient's (the same names), so it cannot share a process with the
builder. Exit 0 when the file matches; otherwise exit 1 with one line naming the key path.

The classes are KServe's OpenAPI-generated ``V1beta1*`` models and the ``kubernetes`` client's
``V1*`` models they refer to: every key must be a field of its class (``attribute_map``),
every value of the field's type (``openapi_types``), and each class is constructed with its
fields so that its own checks (required fields, enum values) run.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

_SCALARS: dict[str, tuple[type[Any], ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
}


class SchemaMismatch(Exception):
    pass


def _model_class(type_name: str) -> type[Any]:
    import kserve.models as ks
    import kubernetes.client.models as k8s

    for module in (ks, k8s):
        found = getattr(module, type_name, None)
        if isinstance(found, type):
            return found
    raise SchemaMismatch(f"no model class {type_name} in kserve or kubernetes")


def _container(type_name: str, openings: tuple[str, ...]) -> str | None:
    """The inside of ``list[X]`` / ``List[X]`` or ``dict(K, V)`` / ``Dict[K, V]``, else None
    (the kubernetes client and kserve spell them differently)."""
    for opening in openings:
        if type_name.startswith(opening):
            return type_name[len(opening) : -1]
    return None


def check_against(value: Any, type_name: str, path: str) -> Any:
    """Check parsed YAML against an OpenAPI-generated type; return the built object."""
    if type_name in _SCALARS:
        if not isinstance(value, _SCALARS[type_name]) or (
            type_name in ("int", "float", "str") and isinstance(value, bool)
        ):
            raise SchemaMismatch(f"{path}: {value!r} is not {type_name}")
        return value
    inner = _container(type_name, ("list[", "List["))
    if inner is not None:
        if not isinstance(value, list):
            raise SchemaMismatch(f"{path}: not a list")
        return [check_against(item, inner, f"{path}[{i}]") for i, item in enumerate(value)]
    inner = _container(type_name, ("dict(", "Dict["))
    if inner is not None:
        if not isinstance(value, dict):
            raise SchemaMismatch(f"{path}: not a mapping")
        inner = inner.split(",", 1)[1].strip()
        return {k: check_against(v, inner, f"{path}.{k}") for k, v in value.items()}
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        raise SchemaMismatch(f"{path}: {type_name} must be a mapping")
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_key))
    if unknown:
        raise SchemaMismatch(f"{path}: {type_name} has no field(s) {unknown}")
    kwargs = {
        by_key[key]: check_against(item, cls.openapi_types[by_key[key]], f"{path}.{key}")
        for key, item in value.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise SchemaMismatch(f"{path}: {type_name}: {exc}") from None


def main(argv: list[str]) -> int:
    from importlib.metadata import version

    for name in argv:
        with open(name, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        try:
            check_against(document, "V1beta1InferenceService", "InferenceService")
        except SchemaMismatch as exc:
            print(f"{name}: {exc}")
            return 1
        print(f"{name}: matches V1beta1InferenceService (kserve {version('kserve')})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
