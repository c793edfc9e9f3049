"""The typed clients as a long-running service uses them, against a real tritonserver.

Regression tests for what one-call acceptance tests missed: descriptors of long-lived
clients (each flavour, many multi-chunk calls, a fresh thread per request), calls made while
the server restarts (default policy and the README's), timeouts that are not retried and not
cut short (a request the server runs once; a load of 40 s), clients lent to task clients,
event loops, closed clients, and every caller mistake raising a ClientError that names it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builder.pipeline import BuildResult
from builder.plan import plan_vllm
from builder.render import render_vllm
from builder.serve import LocalServer, Ports, free_ports
from builder.spec import parse_spec
from clients import (
    AsyncClassificationClient,
    AsyncEmbeddingClient,
    AsyncGenerationClient,
    AsyncTritonClient,
    ClassificationClient,
    ClientError,
    DeadlineExceeded,
    EmbeddingClient,
    GenerationClient,
    InvalidInputError,
    ModelNotFoundError,
    RetryPolicy,
    ServerError,
    TritonClient,
)
from clients.errors import ClientClosedError, ConfigurationError

pytestmark = [pytest.mark.triton, pytest.mark.slow]

PROTOCOLS = ["http", "grpc"]
README_POLICY = RetryPolicy(attempts=5, deadline=30.0)
LOAD_SECONDS = 40  # longer than the default retry deadline (30 s)


def url_for(server: LocalServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def sockets_to(ports: set[int]) -> int:
    """This process's descriptors of TCP connections to ``ports`` (the server's)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) in ports:
                    inodes.add(fields[9])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def texts(count: int) -> list[str]:
    return [f"text number {i} is {'good' if i % 2 else 'bad'}" for i in range(count)]


# --- descriptors ---------------------------------------------------------------------------

CALLS = 300
WARM_UP = 20


def assert_flat(counts: list[int], start: int, after_close: int | None, what: str) -> None:
    """Descriptors stay flat after warm-up (within 5), and close() gives them back: the exact
    check is ``assert_released`` (connections to the server); the total may keep up to 8 more,
    the descriptors gRPC's process-wide event engine opens and closes on its own (5 here)."""
    steady = counts[WARM_UP:]
    print(
        f"{what}: fds at start {start}, after warm-up {counts[WARM_UP]}, "
        f"min {min(steady)} max {max(steady)}, after close {after_close}"
    )
    assert max(steady) - min(steady) <= 5, f"{what}: descriptors grew: {steady[:: CALLS // 10]}"
    if after_close is not None:
        assert after_close <= start + 8, f"{what}: {after_close - start} descriptors left open"


def server_connections(server: LocalServer) -> int:
    gc.collect()  # clients other tests left unclosed are closed by their finalizers
    return sockets_to({server.ports.http, server.ports.grpc})


def assert_released(server: LocalServer, before: int, what: str) -> None:
    """The client's connections to the server are closed: back to the count before it."""
    left = server_connections(server)
    print(f"{what}: connections to the server before {before}, after close {left}")
    assert left <= before, f"{what}: {left - before} connection(s) left open after close()"


def warm(protocol: str, server: LocalServer) -> None:
    """One client used as the test uses it (concurrent chunks, a call from another thread) and
    closed: gRPC keeps process-wide descriptors (its event engine's) from its first such use
    on, whatever the clients; they are not the clients' to release."""
    with TritonClient(url_for(server, protocol), protocol) as client:
        with ClassificationClient(client, "sentiment", concurrency=3) as classifier:
            classifier.classify(texts(20))
        worker = threading.Thread(target=one_request, args=(client, []))
        worker.start()
        worker.join()


def one_request(client: TritonClient, results: list[Any]) -> None:
    results.append(client.infer("sentiment", {"TEXT": [["hi"]]}))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_long_lived_sync_client_keeps_its_descriptors(server: LocalServer, protocol: str) -> None:
    warm(protocol, server)
    connections = server_connections(server)
    start = open_fds()
    batch = texts(20)  # max_batch_size 8: three chunks sent concurrently
    with TritonClient(url_for(server, protocol), protocol) as client:
        classifier = ClassificationClient(client, "sentiment", concurrency=3)
        counts = []
        for _ in range(CALLS):
            assert len(classifier.classify(batch)) == 20
            counts.append(open_fds())
        classifier.close()  # its threads end; the lent client stays open
        assert_flat(counts, start, None, f"{protocol} multi-chunk")

        counts = []
        for _ in range(CALLS):  # a thread-per-request server sharing one client
            results: list[Any] = []
            worker = threading.Thread(target=one_request, args=(client, results))
            worker.start()
            worker.join()
            assert len(results) == 1
            counts.append(open_fds())
    assert_flat(counts, start, open_fds(), f"{protocol} thread per request")
    assert_released(server, connections, f"{protocol} TritonClient")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_long_lived_embedding_client_from_a_url_keeps_its_descriptors(
    server: LocalServer, protocol: str
) -> None:
    warm(protocol, server)
    connections = server_connections(server)
    start = open_fds()
    batch = texts(40)  # max_batch_size 32: two chunks
    counts = []
    with EmbeddingClient(url_for(server, protocol), "minilm", protocol=protocol) as embedder:
        for _ in range(CALLS // 3):
            assert embedder.embed(batch).shape == (40, 384)
            counts.append(open_fds())
    assert_flat(counts, start, open_fds(), f"{protocol} EmbeddingClient(url)")
    assert_released(server, connections, f"{protocol} EmbeddingClient(url)")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_long_lived_async_client_keeps_its_descriptors(
    server: LocalServer, protocol: str
) -> None:
    connections = server_connections(server)

    async def run() -> tuple[list[int], list[int], int]:
        async with AsyncTritonClient(url_for(server, protocol), protocol) as warm_client:
            await warm_client.infer("sentiment", {"TEXT": [["warm"]]})
        start = open_fds()
        multi, single = [], []
        async with AsyncTritonClient(url_for(server, protocol), protocol) as client:
            classifier = AsyncClassificationClient(client, "sentiment", concurrency=3)
            for _ in range(CALLS):
                assert len(await classifier.classify(texts(20))) == 20
                multi.append(open_fds())
            for _ in range(CALLS):  # a task per request
                task = asyncio.create_task(client.infer("sentiment", {"TEXT": [["hi"]]}))
                assert (await task)["LABEL"].shape == (1, 1)
                single.append(open_fds())
        return multi, single, start

    multi, single, start = asyncio.run(run())
    after = open_fds()
    assert_flat(multi, start, after, f"async {protocol} multi-chunk")
    assert_flat(single, start, after, f"async {protocol} task per request")
    assert_released(server, connections, f"async {protocol} AsyncTritonClient")


# --- a server restart ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_repository(served_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the tiny classifier: a server over it restarts in seconds."""
    repo = tmp_path_factory.mktemp("restart") / "repo"
    for member in ("sentiment", "sentiment_tokenizer", "sentiment_onnx", "sentiment_postprocess"):
        shutil.copytree(served_build.repository / member, repo / member)
    return repo


@dataclass
class Outcome:
    ok: bool
    started: float  # seconds after the clock's zero
    ended: float
    detail: Any


def start_all(
    calls: dict[str, Callable[[], Any]], zero: float
) -> tuple[dict[str, Outcome], list[threading.Thread]]:
    """Each call in a thread of its own; ClientErrors are outcomes, not test failures."""
    outcomes: dict[str, Outcome] = {}

    def run(name: str, call: Callable[[], Any]) -> None:
        started = time.monotonic() - zero
        try:
            result = call()
            outcomes[name] = Outcome(True, started, time.monotonic() - zero, result)
        except ClientError as exc:
            outcomes[name] = Outcome(False, started, time.monotonic() - zero, exc)

    workers = [threading.Thread(target=run, args=item) for item in calls.items()]
    for worker in workers:
        worker.start()
    return outcomes, workers


def join_all(workers: list[threading.Thread], timeout: float) -> None:
    for worker in workers:
        worker.join(timeout=timeout)


def report(outcomes: dict[str, Outcome]) -> None:
    for name, o in sorted(outcomes.items()):
        state = "ok" if o.ok else "FAILED"
        print(f"  {name}: started {o.started:.1f} s, {state} at {o.ended:.1f} s ({o.detail})")


def sync_label(url: str, protocol: str, policy: RetryPolicy | None) -> Callable[[], Any]:
    def call() -> Any:
        with TritonClient(url, protocol, retry=policy) as client:  # type: ignore[arg-type]
            return client.infer("sentiment", {"TEXT": [["good"]]})["LABEL"][0, 0]

    return call


def async_label(url: str, protocol: str, policy: RetryPolicy | None) -> Callable[[], Any]:
    async def run() -> Any:
        async with AsyncTritonClient(url, protocol, retry=policy) as client:  # type: ignore[arg-type]
            return (await client.infer("sentiment", {"TEXT": [["good"]]}))["LABEL"][0, 0]

    return lambda: asyncio.run(run())


def test_calls_made_during_a_restart_reach_the_server_again(small_repository: Path) -> None:
    ports = Ports(*free_ports(3))
    first = LocalServer(small_repository, ports=ports)
    first.start()
    urls = {"http": first.http_url, "grpc": first.grpc_url}
    for protocol, url in urls.items():  # the server answered before it went down
        with TritonClient(url, protocol) as client:  # type: ignore[arg-type]
            assert client.is_ready()
    first.close()
    down_at = time.monotonic()
    calls = {
        f"{flavour}-{protocol}-{policy_name}": make(urls[protocol], protocol, policy)
        for policy_name, policy in (("default", None), ("readme", README_POLICY))
        for protocol in PROTOCOLS
        for flavour, make in (("sync", sync_label), ("async", async_label))
    }
    outcomes, workers = start_all(calls, down_at)
    while time.monotonic() - down_at < 5.0:  # down for 5 s, then back on the same ports
        time.sleep(0.1)
    second = LocalServer(small_repository, ports=ports)
    try:
        second.start()
        up_at = time.monotonic() - down_at
        join_all(workers, timeout=120)
    finally:
        second.close()
    print(f"server down at 0.0 s, ready again at {up_at:.1f} s")
    report(outcomes)
    assert sorted(outcomes) == sorted(calls)
    assert [name for name, o in outcomes.items() if not o.ok] == []
    assert all(o.started < 5.0 for o in outcomes.values())  # all made during the outage


# --- timeouts: not retried, not cut ----------------------------------------------------------

SLOW_MODEL = textwrap.dedent(
    """
    import json
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            seconds = config.get("parameters", {}).get("load_seconds", {}).get("string_value")
            time.sleep(float(seconds or 0))

        def execute(self, requests):
            responses = []
            for request in requests:
                value = pb_utils.get_input_tensor_by_name(request, "SECONDS").as_numpy()
                time.sleep(float(value.reshape(-1)[0]))
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value)]))
            return responses
    """
)


def slow_config(name: str, load_seconds: int = 0) -> str:
    return textwrap.dedent(
        f"""
        name: "{name}"
        backend: "python"
        max_batch_size: 0
        input [{{ name: "SECONDS" data_type: TYPE_FP32 dims: [1] }}]
        output [{{ name: "OUT" data_type: TYPE_FP32 dims: [1] }}]
        instance_group [{{ kind: KIND_CPU count: 1 }}]
        parameters {{ key: "load_seconds" value {{ string_value: "{load_seconds}" }} }}
        """
    )


SLOW_LLM = textwrap.dedent(
    """
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            for request in requests:
                sender = request.get_response_sender()
                prompt = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()
                seconds = float(prompt.reshape(-1)[0].decode().split()[-1])
                time.sleep(seconds)
                out = np.array([f"slept {seconds:g}".encode()], dtype=object)
                sender.send(
                    pb_utils.InferenceResponse([pb_utils.Tensor("text_output", out)]),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
            return None
    """
)

LOADERS = [f"{flavour}_{protocol}" for flavour in ("sync", "async") for protocol in PROTOCOLS]


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """`slow` sleeps as long as its input says; `load_<flavour>_<protocol>` take 40 s to
    load (not loaded at start); `slow_llm` has the vllm contract and sleeps before answering."""
    repo = tmp_path_factory.mktemp("slow") / "repo"
    models = {"slow": slow_config("slow")}
    models.update({f"load_{n}": slow_config(f"load_{n}", LOAD_SECONDS) for n in LOADERS})
    for name, config in models.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(SLOW_MODEL)
    spec = parse_spec(
        "models:\n  - {name: slow_llm, task: text-generation, backend: vllm, "
        "engine: {model: unused}}\n",
        Path("models.yaml"),
    )
    llm_config = render_vllm(plan_vllm(spec.models[0]), "models.yaml")["slow_llm"]
    (repo / "slow_llm" / "1").mkdir(parents=True)
    # two instances: the HTTP and gRPC generations run side by side
    llm_config = llm_config.replace('backend: "vllm"', 'backend: "python"')
    (repo / "slow_llm" / "config.pbtxt").write_text(llm_config.replace("count: 1", "count: 2"))
    (repo / "slow_llm" / "1" / "model.py").write_text(SLOW_LLM)
    args = ("--model-control-mode=explicit", "--load-model=slow", "--load-model=slow_llm")
    with LocalServer(repo, extra_args=args) as running:
        yield running


def executions(server: LocalServer, model: str) -> int:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/stats") as reply:
        stats = json.load(reply)["model_stats"][0]
    return int(stats["execution_count"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_timed_out_infer_is_sent_once_and_raises_at_once(
    slow_server: LocalServer, protocol: str
) -> None:
    seconds = np.array([1.5], dtype=np.float32)
    with TritonClient(url_for(slow_server, protocol), protocol) as client:
        client.model_info("slow")
        before = executions(slow_server, "slow")
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            client.infer("slow", {"SECONDS": seconds}, timeout=0.05)
        elapsed = time.monotonic() - started
        print(f"{protocol}: DeadlineExceeded after {elapsed:.3f} s: {caught.value}")
        assert elapsed < 0.5
        message = str(caught.value)
        assert "infer on model 'slow'" in message and "0.05 s" in message
        # one instance runs requests in arrival order: when this one is back, every copy a
        # retry might have sent has run too
        marker = client.infer("slow", {"SECONDS": np.array([0.0], dtype=np.float32)}, timeout=60)
        assert marker["OUT"].tolist() == [0.0]
        assert executions(slow_server, "slow") == before + 2


def sync_load(url: str, protocol: str, model: str) -> Callable[[], Any]:
    def call() -> bool:
        with TritonClient(url, protocol) as client:  # type: ignore[arg-type]
            client.load_model(model, timeout=120)
            # Triton answers HTTP slowly while other loads hold its HTTP threads
            return client.is_model_ready(model, timeout=120)

    return call


def async_load(url: str, protocol: str, model: str) -> Callable[[], Any]:
    async def load() -> bool:
        async with AsyncTritonClient(url, protocol) as client:  # type: ignore[arg-type]
            await client.load_model(model, timeout=120)
            return await client.is_model_ready(model, timeout=120)

    return lambda: asyncio.run(load())


def slow_generation(url: str, protocol: str) -> Callable[[], Any]:
    def call() -> str:
        with GenerationClient(url, "slow_llm", protocol) as llm:  # type: ignore[arg-type]
            return llm.generate("sleep 35").text  # the default timeout, 120 s

    return call


def test_a_load_longer_than_the_default_deadline_succeeds(slow_server: LocalServer) -> None:
    """load_model(timeout=120) of a model that loads in 40 s, in all four modes at once, and
    GenerationClient's default timeout (120 s) on a 35 s generation over both protocols."""
    calls: dict[str, Callable[[], Any]] = {}
    for protocol in PROTOCOLS:
        url = url_for(slow_server, protocol)
        calls[f"load sync {protocol}"] = sync_load(url, protocol, f"load_sync_{protocol}")
        calls[f"load async {protocol}"] = async_load(url, protocol, f"load_async_{protocol}")
        calls[f"generate {protocol}"] = slow_generation(url, protocol)
    outcomes, workers = start_all(calls, time.monotonic())
    join_all(workers, timeout=300)
    report(outcomes)
    assert sorted(outcomes) == sorted(calls)
    assert [name for name, o in outcomes.items() if not o.ok] == []
    assert all(o.detail is True for n, o in outcomes.items() if n.startswith("load"))
    assert all(o.detail == "slept 35" for n, o in outcomes.items() if n.startswith("generate"))
    assert all(o.ended > 30 for o in outcomes.values())  # each outlived the default deadline


# --- lending, loops, closing -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_lent_client_outlives_the_task_client(server: LocalServer, protocol: str) -> None:
    with TritonClient(url_for(server, protocol), protocol) as client:
        with EmbeddingClient(client, "minilm") as embedder:
            assert embedder.embed(texts(40)).shape == (40, 384)
        assert client.infer("minilm", {"TEXT": [["still open"]]})["EMBEDDING"].shape == (1, 384)
        with pytest.raises(ClientClosedError, match="EmbeddingClient for 'minilm' is closed"):
            embedder.embed(texts(2))

    async def run() -> None:
        async with AsyncTritonClient(url_for(server, protocol), protocol) as aclient:
            async with AsyncEmbeddingClient(aclient, "minilm") as aembedder:
                assert (await aembedder.embed(texts(3))).shape == (3, 384)
            out = await aclient.infer("minilm", {"TEXT": [["still open"]]})
            assert out["EMBEDDING"].shape == (1, 384)

    asyncio.run(run())


# The first client's connections belong to the first loop, which asyncio.run closed: they
# cannot be closed properly from the second one, and are reclaimed (with a warning) by the GC.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_async_client_belongs_to_one_loop_and_says_so(
    server: LocalServer, protocol: str
) -> None:
    client = AsyncTritonClient(url_for(server, protocol), protocol)
    assert asyncio.run(client.is_live()) is True
    with pytest.raises(ClientError, match="first used in another event loop"):
        asyncio.run(client.is_live())
    closed = AsyncTritonClient(url_for(server, protocol), protocol)

    async def use_then_close() -> None:
        assert await closed.is_ready() is True
        await closed.close()
        with pytest.raises(ClientClosedError, match="is closed"):
            await closed.is_ready()

    asyncio.run(use_then_close())
    del client
    gc.collect()  # reclaim the first loop's connections here, under this test's filters


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_calls_after_close_raise_client_closed(server: LocalServer, protocol: str) -> None:
    client = TritonClient(url_for(server, protocol), protocol)
    assert client.is_live() is True
    client.close()
    client.close()  # idempotent
    with pytest.raises(ClientClosedError) as caught:
        client.infer("minilm", {"TEXT": [["x"]]})
    assert url_for(server, protocol).removeprefix("http://") in str(caught.value)


# --- caller mistakes: each a ClientError that names it ---------------------------------------


def test_caller_mistakes_raise_client_errors_that_name_them(server: LocalServer) -> None:
    grpc_port = server.grpc_url.rsplit(":", 1)[1]
    host = "127.0.0.1"
    cases: list[tuple[Callable[[], Any], type[ClientError], str]] = [
        (lambda: TritonClient(None), ConfigurationError, "url: expected 'host:port'"),  # type: ignore[arg-type]
        (lambda: TritonClient("ftp://h:1"), ConfigurationError, "unknown scheme 'ftp'"),
        (lambda: TritonClient("h:1", "rest"), ConfigurationError, "got 'rest'"),  # type: ignore[arg-type]
        (lambda: TritonClient("grpc://h:1"), ConfigurationError, "is a grpc URL"),
        (lambda: TritonClient("h:99999"), ConfigurationError, "url 'h:99999'"),
        (lambda: TritonClient("h:1", timeout=0), ConfigurationError, "timeout: must be"),
        (lambda: RetryPolicy(attempts=0), ConfigurationError, "RetryPolicy.attempts"),
        (
            lambda: EmbeddingClient(server.http_url).embed(["ok", "bad \udc80"]),
            InvalidInputError,
            "texts[1]: not encodable as UTF-8",
        ),
        (
            lambda: EmbeddingClient(server.http_url).embed("one string"),
            InvalidInputError,
            "got a single str",
        ),
        (
            lambda: EmbeddingClient(f"{host}:{grpc_port}").embed(["x"]),
            ClientError,
            f"{host}:{grpc_port} did not answer with HTTP/1.1",
        ),
        (
            lambda: TritonClient(server.http_url).infer("minilm", {"TEXT": ["a", "b"]}),
            InvalidInputError,
            "a batch of 2 is shape [2, 1]",
        ),
        (
            lambda: TritonClient(server.http_url).infer(
                "minilm", {"TEXT": np.zeros((0, 1), dtype=object)}
            ),
            InvalidInputError,
            "an empty batch",
        ),
        (
            lambda: TritonClient(server.http_url).infer(
                "minilm", {"TEXT": [["a"]]}, outputs=["EMBEDDINGS"]
            ),
            InvalidInputError,
            "unknown output(s) 'EMBEDDINGS'",
        ),
        (
            lambda: TritonClient(server.http_url).infer("minilm", {"TEXT": [["a"]]}, timeout=0),
            ConfigurationError,
            "timeout: must be a finite number of seconds > 0, got 0",
        ),
        (
            lambda: TritonClient(server.http_url).load_model("nope"),
            ModelNotFoundError,
            "no model 'nope' in the server's repository",
        ),
        (
            lambda: TritonClient(server.grpc_url, "grpc").unload_model("nope"),
            ModelNotFoundError,
            "no model 'nope' in the server's repository",
        ),
        (
            lambda: TritonClient(server.metrics_url.removesuffix("/metrics")).server_metadata(),
            ServerError,
            "not Triton's JSON; is this a Triton HTTP endpoint (not the metrics port)?",
        ),
    ]
    for call, kind, fragment in cases:
        try:
            call()
        except ClientError as error:
            assert isinstance(error, kind), (fragment, error)
            assert fragment in str(error), (fragment, str(error))
        else:
            pytest.fail(f"no ClientError for the case expecting {fragment!r}")


def test_generators_and_scheme_case_are_accepted(server: LocalServer) -> None:
    url = server.http_url.replace("http://", "HTTP://")
    with EmbeddingClient(url, "minilm") as embedder:
        assert embedder.embed(t for t in ["a", "b", "c"]).shape == (3, 384)
    with EmbeddingClient(server.grpc_url, "minilm", protocol="grpc") as embedder:
        assert embedder.embed(["a"]).shape == (1, 384)


def test_an_async_generation_client_closes(server: LocalServer) -> None:
    async def run() -> None:
        async with AsyncGenerationClient(server.grpc_url, "llm") as llm:
            pass
        with pytest.raises(ClientClosedError):
            await llm.generate("hi")

    asyncio.run(run())
