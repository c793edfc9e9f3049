"""Kubernetes and KServe manifests for a built, uploaded repository.

``plan_deployment`` turns the spec, the repository's URI (and, unless offline, the manifest
read from it) and the command-line choices into a frozen ``DeployPlan``; ``render_manifests``
renders ``templates/deploy/*.yaml.j2`` from it (Jinja2, ``StrictUndefined``) and parses every
file back as YAML before anything is written. Every resource name comes from
``resource_names``. The tests validate the files with ``kubernetes-validate --strict`` and the
InferenceService against the ``kserve`` package's model classes.

What a pod runs is the command ``triton-pack serve`` runs locally (``serve.serving_args``)
with the repository's S3 URI; readiness and liveness are ``triton-pack probe`` (a real
inference on each of the spec's models, since Triton's ready flag stays up when a Python stub
died); the HPA scales on ``autoscale.QUEUE_TIME_RULE`` through prometheus-adapter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
import yaml

from builder.autoscale import QUEUE_DURATION, QUEUE_TIME_RULE, Rule
from builder.errors import DeployError
from builder.render import TEMPLATES_DIR
from builder.serve import Ports, serving_args
from builder.spec import Spec
from builder.storage import RepositoryURI

__all__ = [
    "KUBERNETES_VERSIONS",
    "DeployPlan",
    "FrontPlan",
    "ResourceNames",
    "plan_deployment",
    "render_manifests",
    "resource_names",
    "write_manifests",
]

Target = Literal["kubernetes", "kserve"]
TARGETS: tuple[Target, ...] = ("kubernetes", "kserve")
# The Kubernetes releases the manifests are validated against (kubernetes-validate --strict)
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0", "1.37.0")
DEFAULT_IMAGE = "triton-pack-models:latest"  # what the README's `docker build -t …` makes
TRITON_PORTS = Ports(http=8000, grpc=8001, metrics=8002)
# KServe's kserve-tritonserver ClusterServingRuntime starts tritonserver with these ports
# (--http-port=8080 --grpc-port=9000; metrics keep Triton's default)
KSERVE_PORTS = Ports(http=8080, grpc=9000, metrics=8002)
FRONT_PORT = 8080
SPEC_DIR = "/etc/triton-pack"
KEYS_DIR = "/etc/triton-pack-keys"
_LONGEST_SUFFIX = len("-triton-grpc")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class ResourceNames:
    """Every Kubernetes name of one deployment, derived from one base name."""

    base: str

    @property
    def triton(self) -> str:
        """The Deployment, Service, PodDisruptionBudget and HPA of tritonserver."""
        return f"{self.base}-triton"

    @property
    def triton_grpc(self) -> str:
        """KServe: a Service on the predictor's gRPC port, for the front."""
        return f"{self.base}-triton-grpc"

    @property
    def inference_service(self) -> str:
        return self.base

    @property
    def predictor(self) -> str:
        """The Deployment KServe's raw deployment mode makes for the predictor."""
        return f"{self.base}-predictor"

    @property
    def front(self) -> str:
        return f"{self.base}-api"

    @property
    def spec(self) -> str:
        """The ConfigMap holding the spec the front reads."""
        return f"{self.base}-spec"

    @property
    def api_keys(self) -> str:
        """The Secret (not rendered: yours) with the front's API keys, key ``api-keys``."""
        return f"{self.base}-api-keys"

    @property
    def s3(self) -> str:
        """The Secret (not rendered: yours) with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
        AWS_DEFAULT_REGION."""
        return f"{self.base}-s3"


def resource_names(base: str) -> ResourceNames:
    """The names of a deployment called ``base``: a DNS label short enough for every suffix."""
    if not _DNS_LABEL.fullmatch(base) or len(base) > 63 - _LONGEST_SUFFIX:
        raise DeployError(
            f"--name {base!r}: must be lowercase letters, digits and '-', start and end with a "
            f"letter or digit, and be at most {63 - _LONGEST_SUFFIX} characters (Kubernetes "
            "names are DNS labels, and the longest derived one adds "
            f"{_LONGEST_SUFFIX} characters)"
        )
    return ResourceNames(base)


@dataclass(frozen=True)
class FrontPlan:
    """The OpenAI-compatible front (``triton-pack api``) as its own Deployment and Service."""

    spec_file: str  # the key in the ConfigMap, e.g. models.yaml
    spec_text: str
    triton_address: str  # host:port of tritonserver's gRPC endpoint
    repository: str  # the s3:// URI the front copies the tokenizers from
    port: int = FRONT_PORT
    spec_dir: str = SPEC_DIR  # where the ConfigMap is mounted
    keys_dir: str = KEYS_DIR  # where the API keys Secret is mounted

    @property
    def command(self) -> tuple[str, ...]:
        return (
            "triton-pack",
            "api",
            "--triton",
            self.triton_address,
            "--spec",
            f"{self.spec_dir}/{self.spec_file}",
            "--repository",
            self.repository,
            "--host",
            "0.0.0.0",
            "--port",
            str(self.port),
            "--api-keys",
            f"{self.keys_dir}/api-keys",
        )


@dataclass(frozen=True)
class DeployPlan:
    target: Target
    names: ResourceNames
    repository: RepositoryURI
    image: str
    models: tuple[str, ...]  # the spec's models: what the probes ask for a real answer
    gpus: int  # per replica: 1 when any model runs on target gpu
    cpus: int | None  # the spec's defaults.cores (the build derived thread counts from it)
    min_replicas: int
    max_replicas: int
    queue_target_us: int
    front: FrontPlan | None
    rule: Rule = QUEUE_TIME_RULE

    @property
    def ports(self) -> Ports:
        return KSERVE_PORTS if self.target == "kserve" else TRITON_PORTS

    @property
    def triton_command(self) -> tuple[str, ...]:
        """tritonserver and the arguments ``triton-pack serve`` gives it, with the S3 URI."""
        return ("tritonserver", *serving_args(str(self.repository), self.ports))

    @property
    def probe_command(self) -> tuple[str, ...]:
        """The exec probe: a real inference on every model of the spec."""
        models = [arg for name in self.models for arg in ("--model", name)]
        return (
            "triton-pack",
            "probe",
            "--url",
            f"localhost:{self.ports.http}",
            "--timeout",
            "8",
            "-q",
            *models,
        )

    @property
    def adapter_rule(self) -> dict[str, object]:
        """One prometheus-adapter custom rule (its Helm chart's ``rules.custom`` entry)."""
        return {
            "seriesQuery": f'{QUEUE_DURATION}{{namespace!="",pod!=""}}',
            "resources": {
                "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
            },
            "name": {"matches": f"^{QUEUE_DURATION}$", "as": self.rule.name},
            "metricsQuery": self.rule.promql(),
        }


def plan_deployment(
    spec: Spec,
    target: str,
    repository: RepositoryURI,
    *,
    name: str = "triton-pack",
    image: str = DEFAULT_IMAGE,
    front: bool = True,
    min_replicas: int = 1,
    max_replicas: int = 4,
    queue_target_us: int = 5000,
    manifest: dict[str, object] | None = None,
) -> DeployPlan:
    """What to render. ``manifest`` (read from the repository) must list the spec's models."""
    if target not in TARGETS:
        raise DeployError(f"--target {target!r}: must be one of {', '.join(TARGETS)}")
    if not 1 <= min_replicas <= max_replicas:
        raise DeployError(
            f"replicas: need 1 <= --min-replicas ({min_replicas}) <= --max-replicas "
            f"({max_replicas})"
        )
    if queue_target_us < 1:
        raise DeployError(f"--queue-target-us {queue_target_us}: must be at least 1")
    models = tuple(model.name for model in spec.models)
    if manifest is not None:
        built = manifest.get("models")
        built_names = sorted(built) if isinstance(built, dict) else []
        if sorted(models) != built_names:
            raise DeployError(
                f"{repository}: holds models {', '.join(built_names) or 'none'}, but "
                f"{spec.path} lists {', '.join(sorted(models))}: build and upload this spec "
                "first (build-repo SPEC --upload URI)"
            )
    names = resource_names(name)
    gpu = any(spec.target_of(model) == "gpu" for model in spec.models)
    plan_ports = KSERVE_PORTS if target == "kserve" else TRITON_PORTS
    triton_host = names.triton_grpc if target == "kserve" else names.triton
    front_plan = None
    if front:
        front_plan = FrontPlan(
            spec_file=spec.path.name,
            spec_text=spec.path.read_text(encoding="utf-8"),
            triton_address=f"{triton_host}:{plan_ports.grpc}",
            repository=str(repository),
        )
    return DeployPlan(
        target="kserve" if target == "kserve" else "kubernetes",
        names=names,
        repository=repository,
        image=image,
        models=models,
        gpus=1 if gpu else 0,
        cpus=spec.defaults.cores,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        queue_target_us=queue_target_us,
        front=front_plan,
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR / "deploy")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # a JSON string is a valid YAML double-quoted scalar: every value that reaches a
    # template goes through it, so no value can break the document
    env.filters["q"] = lambda value: json.dumps(str(value))
    env.filters["json"] = lambda value: json.dumps(value)
    return env


_ENV = _environment()
_FILES: dict[Target, tuple[str, ...]] = {
    "kubernetes": (
        "triton-deployment.yaml",
        "triton-service.yaml",
        "triton-pdb.yaml",
        "triton-hpa.yaml",
        "prometheus-adapter-values.yaml",
    ),
    "kserve": (
        "inferenceservice.yaml",
        "triton-serviceaccount.yaml",
        "triton-grpc-service.yaml",
        "triton-pdb.yaml",
        "triton-hpa.yaml",
        "prometheus-adapter-values.yaml",
    ),
}
_FRONT_FILES = ("front-configmap.yaml", "front-deployment.yaml", "front-service.yaml")


def render_manifests(plan: DeployPlan) -> dict[str, str]:
    """``{file name: YAML text}``; each one parsed back before it is returned."""
    files = _FILES[plan.target] + (_FRONT_FILES if plan.front is not None else ())
    rendered = {}
    for name in files:
        try:
            text = _ENV.get_template(name + ".j2").render(plan=plan, names=plan.names)
        except jinja2.TemplateError as exc:
            raise DeployError(f"template deploy/{name}.j2: {exc}") from None
        # blank lines left by macros carry no meaning (no value spans lines: all are quoted)
        text = "\n".join(line for line in text.split("\n") if line.strip()) + "\n"
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DeployError(f"{name}: rendered YAML does not parse: {exc}") from None
        if not isinstance(document, dict):
            raise DeployError(f"{name}: rendered YAML is not a mapping")
        rendered[name] = text
    return rendered


def write_manifests(rendered: dict[str, str], directory: Path) -> list[Path]:
    """Write the files into ``directory`` (made if absent); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
