"""Triton Python model: SCORES (the graph's softmax) -> LABEL, the name of the best class.

Only what must produce strings runs here; pooling, normalisation and softmax are in the graph.
"""

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
        self.labels = json.loads(params["labels"])

    def execute(self, requests):
        responses = []
        for request in requests:
            scores = pb_utils.get_input_tensor_by_name(request, "SCORES").as_numpy()
            try:
                labels = text_ops.best_labels(scores, self.labels)
            except ValueError as exc:
                error = pb_utils.TritonError(str(exc))
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            tensors = [pb_utils.Tensor("LABEL", labels)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
