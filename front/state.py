"""What every route reaches through ``request.app.state.front``, and model resolution."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from front.backend import Backend
from front.catalog import Catalog, ServedModel, task_names
from front.errors import APIError
from front.guard import Keys, RateLimiter
from front.metrics import FrontMetrics

__all__ = ["Front", "front_of", "resolve", "resolve_tei"]


@dataclass
class Front:
    catalog: Catalog
    keys: Keys
    limiter: RateLimiter
    metrics: FrontMetrics
    backend: Backend | None = None  # made in the server's event loop (lifespan)

    @property
    def live(self) -> Backend:
        if self.backend is None:
            raise APIError(503, "the front is starting or stopping", code="not_ready")
        return self.backend


def front_of(request: Request) -> Front:
    front: Front = request.app.state.front
    return front


def resolve(request: Request, name: str, task: str, route: str) -> ServedModel:
    """The served model ``name`` for ``route``: 404 if unknown, 400 if of another task."""
    catalog = front_of(request).catalog
    model = catalog.get(name)
    request.state.model = name if model is not None else "unknown"
    if model is None:
        served = ", ".join(m.name for m in catalog.models)
        raise APIError(
            404, f"model {name!r} does not exist (served: {served})", "model", "model_not_found"
        )
    if model.task != task:
        raise APIError(
            400,
            f"model {name!r} is a {model.task} model; {route} serves {task} models: "
            f"{task_names(catalog.of_task(task))}",
            "model",
            "wrong_task",
        )
    return model


def resolve_tei(request: Request, name: str | None, task: str, route: str) -> ServedModel:
    """TEI requests name no model: the spec's first model of the task (or ``model``)."""
    if name is not None:
        return resolve(request, name, task, route)
    models = front_of(request).catalog.of_task(task)
    if not models:
        raise APIError(424, f"{route}: the spec serves no {task} model", code="wrong_task")
    request.state.model = models[0].name
    return models[0]
