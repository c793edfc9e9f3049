"""The autoscaling metric: queue time per request, per model, written once.

Each rule is a small expression tree. A node renders itself as PromQL (what the rendered
prometheus-adapter rule holds) and evaluates itself on two scrapes of tritonserver's
``/metrics`` (what the tests run against a real server), so the string and the arithmetic
cannot drift apart:

    QUEUE_TIME_RULE  max by (<group>) (
                         sum by (<group>, model) (increase(nv_inference_queue_duration_us[w]))
                       / (sum by (<group>, model) (increase(nv_inference_request_success[w])) > 0)
                     )

i.e. per model, Δ queue µs / Δ successful requests over the window; models that served
nothing in the window drop out (``> 0`` filters, it does not make a zero), and the pod's value
is its busiest model's. Triton's Helm example (``HELM_EXAMPLE_RULE``) averages
Δqueue / (1 + Δsuccess) over every loaded model's series, so idle models count as zeros and
a pod with N loaded models under-reports by about N (server issue 8979).

Two snapshots stand for a window: ``increase`` over them is after - before (after, when the
counter was reset). Prometheus extrapolates ``increase`` to the window's edges by the same
factor for every series of one scrape, so ratios of increases are what it computes too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "HELM_EXAMPLE_RULE",
    "QUEUE_DURATION",
    "QUEUE_TIME_RULE",
    "REQUEST_SUCCESS",
    "Series",
    "parse_metrics",
    "per_model_queue_time",
]

QUEUE_DURATION = "nv_inference_queue_duration_us"
REQUEST_SUCCESS = "nv_inference_request_success"

Labels = frozenset[tuple[str, str]]
Series = dict[Labels, float]  # one value per label set; the metric name is not a label here
Snapshot = Mapping[str, Series]  # metric name -> its series

_LINE = re.compile(r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, Series]:
    """Prometheus text exposition format -> ``{metric: {labels: value}}`` (comments skipped)."""
    metrics: dict[str, Series] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None:
            continue
        labels = frozenset(_LABEL.findall(match["labels"] or ""))
        metrics.setdefault(match["name"], {})[labels] = float(match["value"])
    return metrics


def _keep(labels: Labels, names: tuple[str, ...]) -> Labels:
    return frozenset((k, v) for k, v in labels if k in names)


_REDUCE: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "max": max,
    "avg": lambda values: math.fsum(values) / len(values),
}


class Expr:
    """A PromQL expression that can also be evaluated on two snapshots."""

    def promql(self, matchers: str, window: str, group: tuple[str, ...]) -> str:
        raise NotImplementedError

    def evaluate(self, before: Snapshot, after: Snapshot, group: tuple[str, ...]) -> Series:
        raise NotImplementedError


def _by(labels: tuple[str, ...]) -> str:
    return ", ".join(labels)


@dataclass(frozen=True)
class Increase(Expr):
    """``increase(metric{matchers}[window])``; ``delta`` for the Helm example's gauge-style use
    (on a counter that was not reset both are after - before)."""

    metric: str
    function: str = "increase"

    def promql(self, matchers: str, window: str, group: tuple[str, ...]) -> str:
        return f"{self.function}({self.metric}{{{matchers}}}[{window}])"

    def evaluate(self, before: Snapshot, after: Snapshot, group: tuple[str, ...]) -> Series:
        old = before.get(self.metric, {})
        out: Series = {}
        for labels, value in after.get(self.metric, {}).items():
            if labels not in old:
                continue  # a series needs two samples in the window
            previous = old[labels]
            reset = self.function == "increase" and value < previous
            out[labels] = value if reset else value - previous
        return out


@dataclass(frozen=True)
class Aggregate(Expr):
    """``op by (<group>, *extra) (inner)`` with op one of sum, max, avg."""

    op: str
    inner: Expr
    extra: tuple[str, ...] = ()

    def promql(self, matchers: str, window: str, group: tuple[str, ...]) -> str:
        inner = self.inner.promql(matchers, window, group)
        return f"{self.op} by ({_by(group + self.extra)}) ({inner})"

    def evaluate(self, before: Snapshot, after: Snapshot, group: tuple[str, ...]) -> Series:
        buckets: dict[Labels, list[float]] = {}
        for labels, value in self.inner.evaluate(before, after, group).items():
            buckets.setdefault(_keep(labels, group + self.extra), []).append(value)
        return {labels: _REDUCE[self.op](values) for labels, values in buckets.items()}


@dataclass(frozen=True)
class Divide(Expr):
    """``left / right``, one-to-one on identical label sets (as PromQL matches them)."""

    left: Expr
    right: Expr

    def promql(self, matchers: str, window: str, group: tuple[str, ...]) -> str:
        left = self.left.promql(matchers, window, group)
        return f"{left} / {self.right.promql(matchers, window, group)}"

    def evaluate(self, before: Snapshot, after: Snapshot, group: tuple[str, ...]) -> Series:
        right = self.right.evaluate(before, after, group)
        left = self.left.evaluate(before, after, group)
        return {
            labels: (value / right[labels] if right[labels] else math.nan)
            for labels, value in left.items()
            if labels in right
        }


@dataclass(frozen=True)
class Positive(Expr):
    """``(inner > 0)``: keeps the series above zero, drops the others."""

    inner: Expr

    def promql(self, matchers: str, window: str, group: tuple[str, ...]) -> str:
        return f"({self.inner.promql(matchers, window, group)} > 0)"

    def evaluate(self, before: Snapshot, after: Snapshot, group: tuple[str, ...]) -> Series:
        return {k: v for k, v in self.inner.evaluate(before, after, group).items() if v > 0}


@dataclass(frozen=True)
class PlusOne(Expr):
    """``(1 + inner)``."""

    inner: Expr

    def promql(self, matchers: str, window: str, group: tuple[str, ...]) -> str:
        return f"(1 + {self.inner.promql(matchers, window, group)})"

    def evaluate(self, before: Snapshot, after: Snapshot, group: tuple[str, ...]) -> Series:
        return {k: 1 + v for k, v in self.inner.evaluate(before, after, group).items()}


@dataclass(frozen=True)
class Rule:
    """A named metric for prometheus-adapter: the expression, its window and the series the
    adapter discovers it by."""

    name: str
    expr: Expr
    window: str = "1m"
    series: str = QUEUE_DURATION

    def promql(self, matchers: str = "<<.LabelMatchers>>", group: str = "<<.GroupBy>>") -> str:
        """The query; by default with prometheus-adapter's template placeholders."""
        return self.expr.promql(matchers, self.window, (group,) if group else ())

    def evaluate(self, before: Snapshot, after: Snapshot, group: tuple[str, ...] = ()) -> Series:
        return self.expr.evaluate(before, after, group)

    def value(self, before: Snapshot, after: Snapshot) -> float | None:
        """The one value for a single server's two scrapes (no grouping label): None when
        no model served a request in the window (the adapter then has no sample)."""
        series = self.evaluate(before, after)
        return next(iter(series.values()), None)


def _per_model(counter: str, extra: tuple[str, ...] = ("model",)) -> Expr:
    return Aggregate("sum", Increase(counter), extra)


PER_MODEL_QUEUE_TIME = Divide(_per_model(QUEUE_DURATION), Positive(_per_model(REQUEST_SUCCESS)))
QUEUE_TIME_RULE = Rule("triton_queue_us_per_request", Aggregate("max", PER_MODEL_QUEUE_TIME))
HELM_EXAMPLE_RULE = Rule(
    "avg_time_queue_us",
    Aggregate(
        "avg",
        Divide(Increase(QUEUE_DURATION, "delta"), PlusOne(Increase(REQUEST_SUCCESS, "delta"))),
    ),
    window="30s",
)


def per_model_queue_time(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """``{model: Δ queue µs / Δ successes}`` for each model that served requests in between."""
    series = PER_MODEL_QUEUE_TIME.evaluate(before, after, ())
    return {dict(labels)["model"]: value for labels, value in series.items()}
