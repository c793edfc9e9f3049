"""Is every model really answering? Canary inferences, and healing models whose stub died.

tritonserver 2.51 does not restart a Python-backend stub that died (an out-of-memory kill,
say): every request to its model fails while the server and the model keep reporting ready.
``probe`` therefore asks each model for a real answer: a minimal request built from its own
metadata (one row of ``probe`` text, ones for token ids, zeros for floats). ``Healer`` runs
the probe periodically inside ``triton-pack serve`` and loads anew, through the model-control
API, every non-ensemble model that stopped answering (new instances, a new stub); its
ensemble stays READY and answers again. Decoupled models (vLLM) are not probed: a generation is no
canary; Triton's own readiness stands for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clients import ClientError, TritonClient
from clients.types import ModelConfig, ModelMetadata

__all__ = ["Healer", "ProbeResult", "canary_inputs", "probe"]

_FILL: dict[str, Any] = {
    "BYTES": b"probe",
    "BOOL": False,
    "INT64": 1,
    "INT32": 1,
    "INT8": 1,
    "UINT8": 1,
    "UINT32": 1,
    "UINT64": 1,
    "FP32": 0.0,
    "FP16": 0.0,
    "FP64": 0.0,
}
_DTYPES: dict[str, Any] = {
    "BYTES": np.object_,
    "BOOL": np.bool_,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
}


@dataclass(frozen=True)
class ProbeResult:
    model: str
    ok: bool
    detail: str  # "answered in 0.012 s", the error, or why it was skipped
    skipped: bool = False
    ensemble: bool = False


def canary_inputs(metadata: ModelMetadata, config: ModelConfig) -> dict[str, Any] | None:
    """A minimal valid request for the model, or None when one cannot be made up."""
    optional = {spec.name for spec in config.inputs if spec.optional}
    inputs: dict[str, Any] = {}
    for spec in metadata.inputs:
        if spec.name in optional:
            continue
        if spec.datatype not in _FILL:
            return None
        shape = tuple(1 if dim < 0 else dim for dim in spec.shape)
        inputs[spec.name] = np.full(shape, _FILL[spec.datatype], dtype=_DTYPES[spec.datatype])
    return inputs


def _probe_one(client: TritonClient, model: str, timeout: float) -> ProbeResult:
    try:
        metadata, config = client.model_info(model)
    except ClientError as exc:
        return ProbeResult(model, False, f"no metadata: {exc}")
    ensemble = config.platform == "ensemble"
    if config.decoupled:
        return ProbeResult(model, True, "decoupled: not probed", skipped=True)
    inputs = canary_inputs(metadata, config)
    if inputs is None:
        return ProbeResult(model, True, "no canary for its inputs", skipped=True)
    started = time.monotonic()
    try:
        client.infer(model, inputs, timeout=timeout)
    except ClientError as exc:
        return ProbeResult(model, False, str(exc), ensemble=ensemble)
    seconds = time.monotonic() - started
    return ProbeResult(model, True, f"answered in {seconds:.3f} s", ensemble=ensemble)


def probe(
    client: TritonClient, timeout: float = 10.0, models: Sequence[str] = ()
) -> list[ProbeResult]:
    """One canary inference per model the repository index says is READY; with ``models``,
    exactly those, and one the repository does not list fails (a pod whose repository lost
    a model must not look healthy)."""
    results = []
    index = sorted(client.repository_index(), key=lambda e: e.name)
    if models:
        listed = {entry.name for entry in index}
        results += [
            ProbeResult(name, False, "not in the repository")
            for name in models
            if name not in listed
        ]
        index = [entry for entry in index if entry.name in models]
    for entry in index:
        if entry.state == "READY":
            results.append(_probe_one(client, entry.name, timeout))
        else:
            reason = f": {entry.reason}" if entry.reason else ""
            results.append(ProbeResult(entry.name, False, f"state {entry.state or 'none'}{reason}"))
    return results


class Healer:
    """Probes every ``interval`` seconds and reloads the models that stopped answering.

    ``report`` gets one line per event. A reload that fails, or a model still broken after
    its reload, sets ``failure`` (serve then exits non-zero so that a supervisor restarts it).
    """

    def __init__(
        self,
        client: TritonClient,
        interval: float,
        report: Callable[[str], None],
        timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.interval = interval
        self.report = report
        self.timeout = timeout
        self.healed = 0
        self.failure: str | None = None
        self.failed = threading.Event()  # set when healing gave up (self.failure says why)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-pack-healer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)

    def _reload(self, model: str) -> None:
        """Load ``model`` anew. Triton skips a load of an unchanged, loaded model, and an
        unload waits on the dead stub (it hung past 60 s on a busy machine), so the model is
        loaded with its own config plus a marker parameter: new instances are swapped in and
        its ensemble stays READY."""
        config = dict(self.client.model_config(model).raw)
        parameters = dict(config.get("parameters") or {})
        parameters["triton_pack_reload"] = {"string_value": str(self.healed + 1)}
        config["parameters"] = parameters
        self.client.load_model(model, config=config, timeout=120.0)

    def check_once(self) -> None:
        broken = [r for r in probe(self.client, self.timeout) if not r.ok]
        members = [r for r in broken if not r.ensemble]
        if broken and not members:
            names = ", ".join(r.model for r in broken)
            self.report(f"heal: ensemble(s) {names} do not answer, but all their members do")
        for result in members:
            self.report(f"heal: model {result.model!r} does not answer ({result.detail})")
            started = time.monotonic()
            try:
                self._reload(result.model)
            except ClientError as exc:
                self.failure = f"reloading model {result.model!r} failed: {exc}"
                return
            self.healed += 1
            self.report(
                f"heal: model {result.model!r} reloaded in {time.monotonic() - started:.1f} s "
                f"({self.healed} reload(s) so far)"
            )
        if members:
            still = [r.model for r in probe(self.client, self.timeout) if not r.ok]
            if still:
                self.failure = f"model(s) {', '.join(still)} still do not answer after a reload"
                return
            self.report("heal: every model answers again")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
            except ClientError as exc:  # the server itself is gone or stuck
                self.failure = f"the server does not answer the probe: {exc}"
            if self.failure is not None:
                self.report(f"heal: giving up: {self.failure}")
                self.failed.set()
                return
