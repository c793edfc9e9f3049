"""A Python-based ``vllm`` backend for a local tritonserver, running real vLLM on the CPU.

It serves the same ``config.pbtxt`` and ``1/model.json`` as Triton's official vllm backend
(the NGC ``-vllm-python-py3`` image), with the same I/O contract. The request parsing and
response building are pure functions in ``llm_ops`` beside this file.
"""

import asyncio
import contextlib
import json
import locale
import os
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Inside the stub the locale is unset, so open() defaults to ASCII; torch's code generation
# reads UTF-8 templates. Set it before vLLM (and torch) are imported.
os.environ.setdefault("LC_CTYPE", "C.UTF-8")
with contextlib.suppress(locale.Error):
    locale.setlocale(locale.LC_CTYPE, "C.UTF-8")

import llm_ops
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        have_inputs = {i["name"] for i in config.as_dict().get("input", [])}
        for name, kind, optional in llm_ops.INPUTS:
            if name not in have_inputs:
                config.add_input(
                    {"name": name, "data_type": kind, "dims": [1], "optional": optional}
                )
        have_outputs = {o["name"] for o in config.as_dict().get("output", [])}
        for name, kind, dims in llm_ops.OUTPUTS:
            if name not in have_outputs:
                config.add_output({"name": name, "data_type": kind, "dims": dims})
        config.set_model_transaction_policy({"decoupled": True})
        return config

    def initialize(self, args):
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        if not config.get("model_transaction_policy", {}).get("decoupled"):
            raise pb_utils.TritonModelException("the vllm backend needs a decoupled model")
        path = os.path.join(args["model_repository"], args["model_version"], "model.json")
        with open(path, encoding="utf-8") as handle:
            engine_args = json.load(handle)
        self.SamplingParams = SamplingParams
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-loop", daemon=True)
        self.thread.start()

        async def make():
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args))

        self.engine = asyncio.run_coroutine_threadsafe(make(), self.loop).result()
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.metrics = None
        if params.get("REPORT_CUSTOM_METRICS", "false").lower() == "true":
            self.metrics = _Metrics(config["name"], args["model_version"])
        self.logger.log_info(f"vllm stand-in: engine ready for {engine_args.get('model')}")

    def _check_sampling(self, name, value):
        self.SamplingParams(**{name: value})

    def execute(self, requests):
        for request in requests:
            asyncio.run_coroutine_threadsafe(self._generate(request), self.loop)
        return None

    def _inputs(self, request):
        inputs = {}
        for name, _, _ in llm_ops.INPUTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                inputs[name] = tensor.as_numpy()
        return inputs

    async def _generate(self, request):
        """One request: every path ends with exactly one FINAL response."""
        sender = request.get_response_sender()
        request_id = uuid.uuid4().hex
        try:
            await self._run(request, sender, request_id)
        except Exception as exc:  # a bad request or a vLLM failure: this request only
            if not isinstance(exc, llm_ops.RequestError):
                await self.engine.abort(request_id)
                self.logger.log_error(f"vllm stand-in: request {request_id} failed: {exc!r}")
            # a bad request is the client's (INVALID_ARG: HTTP 400); a vLLM failure is ours
            code = (
                pb_utils.TritonError.INVALID_ARG
                if isinstance(exc, llm_ops.RequestError)
                else pb_utils.TritonError.INTERNAL
            )
            error = pb_utils.TritonError(str(exc), code)
            sender.send(pb_utils.InferenceResponse(output_tensors=[], error=error), flags=FINAL)

    async def _run(self, request, sender, request_id):
        parsed = llm_ops.parse_request(
            self._inputs(request), request.parameters(), self._check_sampling
        )
        sampling = self.SamplingParams(**parsed.sampling)
        progress = llm_ops.Progress()
        last = None
        async for output in self.engine.generate(parsed.prompt, sampling, request_id):
            if sender.is_cancelled() or request.is_cancelled():
                await self.engine.abort(request_id)
                self.logger.log_info(f"vllm stand-in: aborted request {request_id} (cancelled)")
                if self.metrics:
                    self.metrics.aborted.increment(1)
                sender.send(flags=FINAL)
                return
            last = output
            if parsed.stream and not output.finished:
                arrays = llm_ops.response_arrays(parsed, output, progress, final=False)
                sender.send(_response(arrays))
        arrays = llm_ops.response_arrays(parsed, last, progress, final=True)
        sender.send(_response(arrays), flags=FINAL)
        if self.metrics:
            self.metrics.finished(last)

    def finalize(self):
        self.logger.log_info("vllm stand-in: shutting down the engine")
        self.engine.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        # drop both while the stub still runs: a MetricFamily freed at interpreter exit
        # touches shared memory that is gone (segfault), and AsyncLLM.__del__ then fails
        self.metrics = None
        self.engine = None


def _response(arrays):
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor(name, array) for name, array in arrays.items()]
    )


class _Metrics:
    """vllm:* counters on Triton's metrics endpoint (REPORT_CUSTOM_METRICS: "true")."""

    def __init__(self, model, version):
        labels = {"model": model, "version": version}

        def counter(name, description):
            family = pb_utils.MetricFamily(name, description, pb_utils.MetricFamily.COUNTER)
            return family, family.Metric(labels=labels)

        self._families = []
        for attr, name, text in (
            ("prompt_tokens", "vllm:prompt_tokens_total", "Prompt tokens processed"),
            ("generation_tokens", "vllm:generation_tokens_total", "Tokens generated"),
            ("success", "vllm:request_success_total", "Requests finished"),
            ("aborted", "vllm:request_aborted_total", "Requests aborted (cancelled)"),
        ):
            family, metric = counter(name, text)
            self._families.append(family)
            setattr(self, attr, metric)

    def finished(self, output):
        self.prompt_tokens.increment(len(output.prompt_token_ids or ()))
        self.generation_tokens.increment(len(output.outputs[0].token_ids))
        self.success.increment(1)
