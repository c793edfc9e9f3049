"""Triton Python model: raw model outputs -> EMBEDDING, or LABEL and SCORES."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import text_ops
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.task = params["task"]
        self.pooling = params.get("pooling", "mean")
        self.normalize = params.get("normalize", "true") == "true"
        self.labels = json.loads(params.get("labels", "[]"))

    def _outputs(self, request):
        if self.task == "text-embedding":
            hidden = pb_utils.get_input_tensor_by_name(request, "last_hidden_state").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            vectors = text_ops.embed(hidden, mask, self.pooling, self.normalize)
            return [pb_utils.Tensor("EMBEDDING", vectors)]
        logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()
        labels, scores = text_ops.classify(logits, self.labels)
        return [pb_utils.Tensor("LABEL", labels), pb_utils.Tensor("SCORES", scores)]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                outputs = self._outputs(request)
            except ValueError as exc:
                error = pb_utils.TritonError(str(exc))
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
