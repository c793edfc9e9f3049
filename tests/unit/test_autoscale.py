"""builder.autoscale: the queue-time rule's PromQL and its arithmetic on two scrapes."""

from __future__ import annotations

import math

import pytest

from builder.autoscale import (
    HELM_EXAMPLE_RULE,
    QUEUE_TIME_RULE,
    parse_metrics,
    per_model_queue_time,
)


def scrape(counters: dict[str, tuple[float, float]]) -> str:
    """Triton-style exposition: per model, (queue µs, successes)."""
    lines = [
        "# HELP nv_inference_queue_duration_us Cumulative inference queuing duration",
        "# TYPE nv_inference_queue_duration_us counter",
    ]
    lines += [
        f'nv_inference_queue_duration_us{{model="{m}",version="1"}} {q:g}'
        for m, (q, _) in counters.items()
    ]
    lines += ["# TYPE nv_inference_request_success counter"]
    lines += [
        f'nv_inference_request_success{{model="{m}",version="1"}} {s:g}'
        for m, (_, s) in counters.items()
    ]
    lines += ["nv_cpu_utilization 0.25", 'nv_gpu_x{gpu_uuid="a\\"b"} 1']
    return "\n".join(lines) + "\n"


BEFORE = parse_metrics(scrape({"busy": (1000, 10), "idle": (500, 5), "calm": (0, 0)}))
AFTER = parse_metrics(scrape({"busy": (91000, 40), "idle": (500, 5), "calm": (300, 3)}))


def test_parse_metrics() -> None:
    assert (
        BEFORE["nv_inference_request_success"][frozenset({("model", "busy"), ("version", "1")})]
        == 10
    )
    assert BEFORE["nv_cpu_utilization"] == {frozenset(): 0.25}
    assert BEFORE["nv_gpu_x"] == {frozenset({("gpu_uuid", 'a\\"b')}): 1.0}


def test_per_model_is_delta_queue_over_delta_success_and_idle_models_drop_out() -> None:
    # busy: 90000 µs over 30 requests; calm: 300 over 3; idle: no request, no value
    assert per_model_queue_time(BEFORE, AFTER) == {"busy": 3000.0, "calm": 100.0}


def test_rule_is_the_busiest_models_value() -> None:
    assert QUEUE_TIME_RULE.value(BEFORE, AFTER) == 3000.0


def test_helm_example_is_diluted_by_idle_models() -> None:
    # avg over three series of Δq/(1+Δs): 90000/31, 0/1, 300/4
    expected = (90000 / 31 + 0 + 300 / 4) / 3
    helm = HELM_EXAMPLE_RULE.value(BEFORE, AFTER)
    assert helm is not None and math.isclose(helm, expected, rel_tol=1e-12)
    assert helm < 3000.0 / 2


def test_nothing_served_has_no_value() -> None:
    assert QUEUE_TIME_RULE.value(BEFORE, BEFORE) is None
    assert per_model_queue_time(BEFORE, BEFORE) == {}


def test_counter_reset_counts_from_zero() -> None:
    after = parse_metrics(scrape({"busy": (600, 2), "idle": (500, 5), "calm": (0, 0)}))
    assert per_model_queue_time(BEFORE, after) == {"busy": 300.0}


def test_grouping_by_pod_keeps_pods_apart() -> None:
    def pod_scrape(values: dict[tuple[str, str], tuple[float, float]]) -> str:
        out = []
        for (pod, model), (q, s) in values.items():
            out.append(f'nv_inference_queue_duration_us{{pod="{pod}",model="{model}"}} {q:g}')
            out.append(f'nv_inference_request_success{{pod="{pod}",model="{model}"}} {s:g}')
        return "\n".join(out)

    before = parse_metrics(pod_scrape({("a", "x"): (0, 0), ("a", "y"): (0, 0), ("b", "x"): (0, 0)}))
    after = parse_metrics(
        pod_scrape({("a", "x"): (100, 10), ("a", "y"): (900, 3), ("b", "x"): (50, 10)})
    )
    by_pod = QUEUE_TIME_RULE.evaluate(before, after, ("pod",))
    assert by_pod == {frozenset({("pod", "a")}): 300.0, frozenset({("pod", "b")}): 5.0}


def test_promql_is_written_from_the_same_tree() -> None:
    assert QUEUE_TIME_RULE.promql() == (
        "max by (<<.GroupBy>>) ("
        "sum by (<<.GroupBy>>, model) "
        "(increase(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])) / "
        "(sum by (<<.GroupBy>>, model) "
        "(increase(nv_inference_request_success{<<.LabelMatchers>>}[1m])) > 0))"
    )
    assert QUEUE_TIME_RULE.promql('namespace="ml"', "") == (
        "max by () (sum by (model) "
        '(increase(nv_inference_queue_duration_us{namespace="ml"}[1m])) / '
        "(sum by (model) "
        '(increase(nv_inference_request_success{namespace="ml"}[1m])) > 0))'
    )
    # Triton's Helm example, as its values.yaml writes it (avg(...) by (...) is avg by (...)(...))
    assert HELM_EXAMPLE_RULE.promql() == (
        "avg by (<<.GroupBy>>) ("
        "delta(nv_inference_queue_duration_us{<<.LabelMatchers>>}[30s]) / "
        "(1 + delta(nv_inference_request_success{<<.LabelMatchers>>}[30s])))"
    )


@pytest.mark.parametrize("rule", [QUEUE_TIME_RULE, HELM_EXAMPLE_RULE])
def test_every_metric_in_the_promql_is_one_the_evaluator_reads(rule: object) -> None:
    from builder.autoscale import QUEUE_DURATION, REQUEST_SUCCESS, Rule

    assert isinstance(rule, Rule)
    text = rule.promql()
    assert text.count(QUEUE_DURATION) == 1 and text.count(REQUEST_SUCCESS) == 1
