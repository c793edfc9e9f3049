"""Render ``config.pbtxt`` files from Jinja2 templates; protobuf judges every one.

Templates render; ``google.protobuf.text_format`` parses each result into Triton's
``ModelConfig`` before anyone writes it, so an invalid config is a build error that names
the model, never a tritonserver load failure.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from builder.errors import RenderError
from builder.plan import MemberPlan, ModelPlan, VllmPlan

__all__ = ["TEMPLATES_DIR", "pbtxt_string", "render_model", "render_vllm", "validate_config"]

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def pbtxt_string(value: object) -> str:
    """A double-quoted protobuf text-format string literal for ``value``."""
    out = []
    for char in str(value):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pbstr"] = pbtxt_string
    return env


_ENV = _environment()


def validate_config(text: str, model_name: str) -> model_config_pb2.ModelConfig:
    """Parse ``text`` into ModelConfig; raise RenderError naming the model on failure."""
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise RenderError(
            f"model {model_name!r}: rendered config.pbtxt is invalid: {exc}"
        ) from None
    if config.name != model_name:
        raise RenderError(
            f"model {model_name!r}: rendered config.pbtxt names model {config.name!r}"
        )
    return config


def _render(template: str, model_name: str, **context: object) -> str:
    try:
        text = _ENV.get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"model {model_name!r}: template {template}: {exc}") from None
    # Blank lines left by macros carry no meaning; keep the files tidy and stable.
    # split on "\n" only: str.splitlines() would also cut labels at U+2028 or U+0085
    lines = [line for line in text.split("\n") if line.strip()]
    text = "\n".join(lines) + "\n"
    validate_config(text, model_name)
    return text


def render_member(member: MemberPlan, plan: ModelPlan, spec_file: str) -> str:
    return _render(
        "model.pbtxt.j2",
        member.name,
        model=member,
        spec_file=spec_file,
        source_model=plan.spec.name,
    )


def render_model(plan: ModelPlan, spec_file: str) -> dict[str, str]:
    """``{triton model name: config.pbtxt text}`` for the ensemble and its members."""
    configs = {m.name: render_member(m, plan, spec_file) for m in plan.members}
    configs[plan.spec.name] = _render(
        "ensemble.pbtxt.j2",
        plan.spec.name,
        plan=plan,
        spec_file=spec_file,
        source_model=plan.spec.name,
    )
    return configs


def render_vllm(plan: VllmPlan, spec_file: str) -> dict[str, str]:
    """``{name: config.pbtxt text}`` for a vllm backend model."""
    name = plan.spec.name
    return {name: _render("vllm.pbtxt.j2", name, plan=plan, spec_file=spec_file, source_model=name)}
