"""Errors raised on the build side. One root, so the CLI can catch one thing::

BuildError
├── SpecError          the YAML spec is invalid (file and key path named)
├── SourceError        a model source cannot be found or read
├── ExportError        torch -> ONNX failed, or the graph is not what the registry declares
├── ParityError        ONNX Runtime and PyTorch disagree beyond the tolerance
├── RenderError        a template failed or rendered an invalid ModelConfig
├── EnsembleError      ensemble steps do not fit together (both ends named)
└── ServeError         tritonserver could not be found, started, or a model failed to load
"""

from __future__ import annotations


class BuildError(Exception):
    """Root of every error the builder raises on purpose."""


class SpecError(BuildError):
    """The spec file is invalid. The message names the file and the key path."""


class SourceError(BuildError):
    """A model source cannot be resolved."""


class ExportError(BuildError):
    """Export to ONNX failed or produced an unexpected graph."""


class ParityError(BuildError):
    """The exported model's outputs differ from PyTorch beyond the allowed tolerance."""


class RenderError(BuildError):
    """A config template failed to render or rendered an invalid ModelConfig."""


class EnsembleError(BuildError):
    """The members of an ensemble do not fit together."""


class ServeError(BuildError):
    """tritonserver could not be started, or a model failed to load."""
