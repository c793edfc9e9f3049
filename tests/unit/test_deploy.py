"""triton-pack deploy: the plan, the names, and every rendered file validated offline.

Kubernetes objects: ``kubernetes-validate --strict`` (unknown fields rejected) for each
version of ``KUBERNETES_VERSIONS``. The InferenceService: against the model classes of the
``kserve`` package (its OpenAPI-generated ``V1beta1*`` classes and the ``kubernetes`` client's
``V1*`` classes they refer to): every key must be a field of its class, every value of the
field's type, and each class is constructed with its fields so that its own checks of
required fields run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.autoscale import QUEUE_TIME_RULE
from builder.cli import main
from builder.deploy import (
    KUBERNETES_VERSIONS,
    DeployPlan,
    plan_deployment,
    render_manifests,
    resource_names,
    write_manifests,
)
from builder.errors import DeployError
from builder.serve import LocalServer, Ports
from builder.spec import Spec, load_spec
from builder.storage import parse_repository_uri
from front.cli import add_api_parser

URI = parse_repository_uri("s3://127.0.0.1:9000/models/repo/0123456789abcdef")
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"


def write_spec(folder: Path, target: str = "cpu") -> Spec:
    path = folder / "models.yaml"
    path.write_text(
        f"""repository: repo
defaults: {{target: {target}, cores: 2}}
models:
  - {{name: minilm, task: text-embedding, source: ./minilm}}
  - {{name: sentiment, task: text-classification, source: ./sentiment}}
""",
        encoding="utf-8",
    )
    return load_spec(path)


@pytest.fixture
def spec(tmp_path: Path) -> Spec:
    return write_spec(tmp_path)


def docs(rendered: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in rendered.items()}


def kubernetes_validate(folder: Path, files: list[str], version: str) -> None:
    result = subprocess.run(
        [str(VALIDATE), "--strict", "-k", version, *files],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in files:
        assert f"INFO {name} passed" in result.stdout, result.stdout


# --- the names -------------------------------------------------------------------------------


def test_every_name_comes_from_the_base() -> None:
    names = resource_names("emb")
    assert (names.triton, names.triton_grpc, names.front, names.spec) == (
        "emb-triton",
        "emb-triton-grpc",
        "emb-api",
        "emb-spec",
    )
    assert (names.api_keys, names.s3, names.inference_service, names.predictor) == (
        "emb-api-keys",
        "emb-s3",
        "emb",
        "emb-predictor",
    )


@pytest.mark.parametrize("bad", ["Emb", "emb_1", "-emb", "emb-", "", "x" * 52])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(DeployError, match=re.escape(f"--name {bad!r}: must be lowercase")):
        resource_names(bad)


def test_longest_name_fits_a_dns_label() -> None:
    names = resource_names("x" * 51)
    assert len(names.triton_grpc) == 63


def test_every_rendered_name_is_a_derived_one(spec: Spec) -> None:
    for target in ("kubernetes", "kserve"):
        plan = plan_deployment(spec, target, URI, name="emb")
        for name, document in docs(render_manifests(plan)).items():
            if name == "prometheus-adapter-values.yaml":
                continue
            assert document["metadata"]["name"].startswith("emb"), name
            assert document["metadata"]["labels"]["app.kubernetes.io/instance"] == "emb"


# --- the plan --------------------------------------------------------------------------------


def test_plan_checks_the_manifest_lists_the_specs_models(spec: Spec) -> None:
    manifest = {"models": {"minilm": {}, "sentiment": {}}}
    assert plan_deployment(spec, "kubernetes", URI, manifest=manifest).models == (
        "minilm",
        "sentiment",
    )
    with pytest.raises(DeployError, match=r"holds models minilm, but .*models.yaml lists"):
        plan_deployment(spec, "kubernetes", URI, manifest={"models": {"minilm": {}}})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "need 1 <= --min-replicas (3)"),
        ({"queue_target_us": 0}, "--queue-target-us 0: must be at least 1"),
    ],
)
def test_plan_refuses_bad_options(spec: Spec, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(DeployError, match=re.escape(message)):
        plan_deployment(spec, "kubernetes", URI, **kwargs)  # type: ignore[arg-type]


def test_plan_refuses_an_unknown_target(spec: Spec) -> None:
    with pytest.raises(DeployError, match="must be one of kubernetes, kserve"):
        plan_deployment(spec, "nomad", URI)


def test_pods_run_what_serve_runs(spec: Spec) -> None:
    """The container's tritonserver arguments are LocalServer's, less its local-only ones."""
    plan = plan_deployment(spec, "kubernetes", URI)
    local = LocalServer(URI, ports=Ports(8000, 8001, 8002))
    try:
        from builder.serve import TritonInstall

        install = TritonInstall(Path("/x/tritonserver"), Path("/x"), (), None)
        command = local.command(install, Path("/b"))
    finally:
        local.close()
    assert plan.triton_command[0] == "tritonserver"
    shared = [arg for arg in command if arg in plan.triton_command]
    assert shared == list(plan.triton_command[1:])  # all of them, in the same order
    assert set(command) - set(shared) == {
        "/x/tritonserver",
        "--backend-directory=/b",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
    }
    assert f"--model-repository={URI}" in plan.triton_command


def test_probe_asks_every_model_for_a_real_answer(spec: Spec) -> None:
    plan = plan_deployment(spec, "kubernetes", URI)
    assert plan.probe_command == (
        "triton-pack", "probe", "--url", "localhost:8000", "--timeout", "8", "-q",
        "--model", "minilm", "--model", "sentiment",
    )  # fmt: skip
    kserve = plan_deployment(spec, "kserve", URI)
    assert kserve.probe_command[3] == "localhost:8080"  # KServe's Triton runtime's HTTP port


# --- rendering: Kubernetes ------------------------------------------------------------------


def _container(document: dict[str, Any]) -> dict[str, Any]:
    container = document["spec"]["template"]["spec"]["containers"][0]
    assert isinstance(container, dict)
    return container


def test_kubernetes_files(spec: Spec) -> None:
    plan = plan_deployment(spec, "kubernetes", URI, name="emb", max_replicas=6)
    rendered = docs(render_manifests(plan))
    assert sorted(rendered) == [
        "front-configmap.yaml",
        "front-deployment.yaml",
        "front-service.yaml",
        "prometheus-adapter-values.yaml",
        "triton-deployment.yaml",
        "triton-hpa.yaml",
        "triton-pdb.yaml",
        "triton-service.yaml",
    ]
    triton = _container(rendered["triton-deployment.yaml"])
    assert triton["command"] + triton["args"] == list(plan.triton_command)
    assert triton["envFrom"] == [{"secretRef": {"name": "emb-s3"}}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert triton[probe]["exec"]["command"] == list(plan.probe_command)
    assert triton["resources"] == {"requests": {"cpu": "2"}}  # defaults.cores; no GPU
    service = rendered["triton-service.yaml"]["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    hpa = rendered["triton-hpa.yaml"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "emb-triton"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 6)
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == QUEUE_TIME_RULE.name
    rule = rendered["prometheus-adapter-values.yaml"]["rules"]["custom"][0]
    assert rule["metricsQuery"] == QUEUE_TIME_RULE.promql()
    assert rule["name"]["as"] == QUEUE_TIME_RULE.name


def test_front(spec: Spec) -> None:
    plan = plan_deployment(spec, "kubernetes", URI, name="emb")
    rendered = docs(render_manifests(plan))
    front = _container(rendered["front-deployment.yaml"])
    assert front["command"] == [
        "triton-pack", "api", "--triton", "emb-triton:8001",
        "--spec", "/etc/triton-pack/models.yaml", "--repository", str(URI),
        "--host", "0.0.0.0", "--port", "8080",
        "--api-keys", "/etc/triton-pack-keys/api-keys",
    ]  # fmt: skip
    # the command is one `triton-pack api` takes (the parser the CLI itself uses)
    parser = argparse.ArgumentParser(prog="triton-pack")
    add_api_parser(parser.add_subparsers(dest="command"), lambda sub: None)
    parsed = parser.parse_args(front["command"][1:])
    assert (parsed.repository, parsed.host, parsed.port) == (str(URI), "0.0.0.0", 8080)
    assert front["livenessProbe"]["httpGet"]["path"] == "/live"
    assert front["envFrom"] == [{"secretRef": {"name": "emb-s3"}}]
    assert rendered["front-configmap.yaml"]["data"] == {
        "models.yaml": spec.path.read_text(encoding="utf-8")
    }
    volumes = rendered["front-deployment.yaml"]["spec"]["template"]["spec"]["volumes"]
    assert volumes[1]["secret"]["secretName"] == "emb-api-keys"
    assert front["readinessProbe"]["httpGet"]["path"] == "/health"
    without = render_manifests(plan_deployment(spec, "kubernetes", URI, front=False))
    assert not [name for name in without if name.startswith("front-")]


def test_gpu_target_adds_gpu_requests(tmp_path: Path) -> None:
    plan = plan_deployment(write_spec(tmp_path, "gpu"), "kubernetes", URI)
    triton = _container(docs(render_manifests(plan))["triton-deployment.yaml"])
    assert triton["resources"] == {
        "requests": {"cpu": "2", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    kserve = docs(render_manifests(plan_deployment(write_spec(tmp_path, "gpu"), "kserve", URI)))
    model = kserve["inferenceservice.yaml"]["spec"]["predictor"]["model"]
    assert model["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_values_with_quotes_and_newlines_stay_values(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    text = spec.path.read_text(encoding="utf-8") + '# "quoted": {not: yaml}\n#\ttab\n'
    spec.path.write_text(text, encoding="utf-8")
    plan = plan_deployment(load_spec(spec.path), "kubernetes", URI, image='reg:5000/i:"x"')
    rendered = docs(render_manifests(plan))
    assert rendered["front-configmap.yaml"]["data"]["models.yaml"] == text
    assert _container(rendered["triton-deployment.yaml"])["image"] == 'reg:5000/i:"x"'


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_kubernetes_validate_strict(spec: Spec, tmp_path: Path, target: str) -> None:
    plan = plan_deployment(spec, target, URI)
    folder = tmp_path / target
    write_manifests(render_manifests(plan), folder)
    files = sorted(
        p.name
        for p in folder.glob("*.yaml")
        if p.name not in ("prometheus-adapter-values.yaml", "inferenceservice.yaml")
    )
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate(folder, files, version)


def test_kubernetes_validate_is_strict_here(spec: Spec, tmp_path: Path) -> None:
    """The check above would catch a wrong field: a rendered Deployment with an unknown key,
    or a value of the wrong type, fails naming it."""
    plan = plan_deployment(spec, "kubernetes", URI)

    def fails(change: Any, named: str) -> None:
        document = docs(render_manifests(plan))["triton-deployment.yaml"]
        change(document)
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
        result = subprocess.run(
            [str(VALIDATE), "--strict", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode != 0 and named in result.stdout, result.stdout

    fails(lambda d: _container(d)["readinessProbe"]["exec"].update(commands=["x"]), "commands")
    fails(lambda d: d["spec"].update(replicas="two"), "spec.replicas")


# --- rendering: KServe ----------------------------------------------------------------------


KSERVE_SCHEMA = Path(__file__).resolve().parent.parent / "kserve_schema.py"


def kserve_check(document: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """tests/kserve_schema.py in its own interpreter (kserve's protos clash with tritonclient's)."""
    path = folder / "inferenceservice.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(KSERVE_SCHEMA), str(path)], capture_output=True, text=True, timeout=120
    )


def test_inference_service_matches_the_kserve_schema(spec: Spec, tmp_path: Path) -> None:
    plan: DeployPlan = plan_deployment(spec, "kserve", URI, name="emb")
    rendered = docs(render_manifests(plan))
    document = rendered["inferenceservice.yaml"]
    result = kserve_check(document, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches V1beta1InferenceService (kserve 0.15.2)" in result.stdout
    assert (document["apiVersion"], document["kind"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    )
    model = document["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"}
    assert model["runtime"] == "kserve-tritonserver"
    assert model["storageUri"] == "s3://models/repo/0123456789abcdef"
    assert model["readinessProbe"]["exec"]["command"] == list(plan.probe_command)
    assert model["livenessProbe"]["exec"]["command"] == list(plan.probe_command)
    annotations = document["metadata"]["annotations"]
    assert annotations["serving.kserve.io/autoscalerClass"] == "external"
    assert annotations["prometheus.io/port"] == "8002"
    assert rendered["triton-hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == "emb-predictor"
    front = _container(rendered["front-deployment.yaml"])
    assert front["command"][3] == "emb-triton-grpc:9000"


def test_kserve_check_is_strict_here(spec: Spec, tmp_path: Path) -> None:
    document = docs(render_manifests(plan_deployment(spec, "kserve", URI)))["inferenceservice.yaml"]
    document["spec"]["predictor"]["model"]["storageURI"] = "s3://x"
    result = kserve_check(document, tmp_path)
    assert result.returncode == 1
    assert "V1beta1ModelSpec has no field(s) ['storageURI']" in result.stdout, result.stdout
    del document["spec"]["predictor"]["model"]["storageURI"]
    document["spec"]["predictor"]["minReplicas"] = "1"
    result = kserve_check(document, tmp_path)
    assert "InferenceService.spec.predictor.minReplicas: '1' is not int" in result.stdout
    del document["spec"]["predictor"]["minReplicas"]
    del document["spec"]["predictor"]["model"]["modelFormat"]
    result = kserve_check(document, tmp_path)  # a required field, checked by the class
    assert result.returncode == 1
    assert "V1beta1ModelSpec: Invalid value for `model_format`, must not be `None`" in (
        result.stdout
    )


# --- the command ----------------------------------------------------------------------------


def test_deploy_command_offline(
    spec: Spec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "deploy", str(spec.path), "--target", "kubernetes", "--repository", str(URI),
            "-o", str(out), "--offline", "--no-front", "--name", "emb",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "prometheus-adapter-values.yaml",
        "triton-deployment.yaml",
        "triton-hpa.yaml",
        "triton-pdb.yaml",
        "triton-service.yaml",
    ]
    assert "2 model(s) from s3://127.0.0.1:9000/models/repo/0123456789abcdef (offline" in (
        captured.err
    )


def test_deploy_command_bad_uri(
    spec: Spec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["deploy", str(spec.path), "--target", "kserve", "--repository", "gs://b/p", "-o", "x"]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("error: gs://b/p: unknown scheme 'gs://'")
