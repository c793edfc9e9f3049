"""Errors raised on the build side. One root, so the CLI can catch one thing::

BuildError
├── SpecError          the YAML spec is invalid (file and key path named)
├── SourceError        a model source cannot be found or read
├── ExportError        torch -> ONNX failed, or the graph is not what the registry declares
├── ParityError        ONNX Runtime and PyTorch disagree beyond the tolerance
├── RenderError        a template failed or rendered an invalid ModelConfig
├── EnsembleError      ensemble steps do not fit together (both ends named)
├── OutputError        the output folder is not one the build may replace
├── ServeError         tritonserver could not be found, started, or a model failed to load
├── StorageError       an object-storage URI is invalid, or its bucket, credentials or
│                      upload are not usable (the URI named)
├── DeployError        manifests cannot be planned for the spec and options given
└── ProfileError       profile/tune cannot measure: unknown model, unreachable server, bad
                       options, perf_analyzer missing or failing (the CLI exits 2)

Errors raised where the spec entry is not known get its location added on the way out
(``located``): ``models.yaml: models[0] (model 'tiny'): ...``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class BuildError(Exception):
    """Root of every error the builder raises on purpose.

    ``located`` is True when the message already names the spec file and the model.
    """

    def __init__(self, message: str, *, located: bool = False) -> None:
        super().__init__(message)
        self.located = located


@contextlib.contextmanager
def located(where: str) -> Iterator[None]:
    """Prefix ``where`` (spec file, key path, model) to a BuildError that lacks it."""
    try:
        yield
    except BuildError as exc:
        if exc.located:
            raise
        raise type(exc)(f"{where}: {exc}", located=True) from exc


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


class OutputError(BuildError):
    """The output folder holds files the build did not make, or the project itself."""


class ServeError(BuildError):
    """tritonserver could not be started, or a model failed to load."""


class StorageError(BuildError):
    """An object-storage URI, its credentials, bucket or objects are not usable (URI named)."""


class DeployError(BuildError):
    """Kubernetes or KServe manifests cannot be made from the spec and options given."""


class ProfileError(BuildError):
    """``profile`` or ``tune`` cannot measure: an unknown model (the known ones are listed), a
    server that does not answer, an unusable corpus or option, perf_analyzer missing or failing
    (its own error is quoted). The CLI exits 2: the command's inputs are wrong, not a build."""
