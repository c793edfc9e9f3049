"""A CPU stand-in for Triton's native ONNX Runtime backend, as a Python-based backend.

tritonserver loads ``<backend dir>/onnxruntime/model.py`` for any config that says
``backend: "onnxruntime"``, so the repository's config is the one the NGC image serves
natively. Requests that the dynamic batcher grouped and whose shapes agree run as one batch.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # the native backend's thread parameters, honoured the same way (0 or absent: default)
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options.intra_op_num_threads = int(params.get("intra_op_thread_count") or 0)
        options.inter_op_num_threads = int(params.get("inter_op_thread_count") or 0)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]

    def _read(self, request):
        arrays = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            arrays[name] = tensor.as_numpy()
        return arrays

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except ValueError as exc:  # tensors the graph cannot take: the client's fault
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                continue
            key = tuple((n, a.shape[1:]) for n, a in arrays.items())
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            self._run_group(members, responses)
        return responses

    def _run_group(self, members, responses):
        feeds = {n: np.concatenate([a[n] for _, a in members]) for n in self.input_names}
        try:
            results = self.session.run(self.output_names, feeds)
        except Exception as exc:  # onnxruntime raises its own, unexported types
            for index, _ in members:
                error = pb_utils.TritonError(f"onnxruntime: {exc}")
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
            return
        start = 0
        for index, arrays in members:
            size = len(next(iter(arrays.values())))
            outputs = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start : start + size]))
                for name, result in zip(self.output_names, results, strict=True)
            ]
            responses[index] = pb_utils.InferenceResponse(output_tensors=outputs)
            start += size
