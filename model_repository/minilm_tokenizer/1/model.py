"""Triton Python model: TEXT -> token tensors, with the HF tokenizer in this version folder."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import text_ops
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.dirname(os.path.abspath(__file__))
        self.tokenizer = Tokenizer.from_file(os.path.join(here, params["tokenizer_file"]))
        self.max_length = int(params["max_sequence_length"])
        self.max_bytes = int(params["max_text_bytes"])
        text_ops.configure_tokenizer(
            self.tokenizer,
            max_length=self.max_length,
            pad_id=int(params["pad_id"]),
            pad_token=params["pad_token"],
        )
        # [[output name, tokenizers Encoding field], ...], from the architecture's registry entry
        self.fields = [tuple(pair) for pair in json.loads(params["encoding_fields"])]

    def _tokens(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
        texts = text_ops.decode_texts(raw, self.max_bytes)
        texts = text_ops.cut_texts(self.tokenizer, texts, self.max_length)
        arrays = text_ops.tokenize(self.tokenizer, texts, self.fields)
        return [pb_utils.Tensor(n, np.ascontiguousarray(a)) for n, a in arrays.items()]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tensors = self._tokens(request)
            except text_ops.BadInput as exc:  # the client's fault: HTTP 400, INVALID_ARGUMENT
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            except Exception as exc:  # ours: INTERNAL; the other requests still get answers
                error = pb_utils.TritonError(f"tokenizer failed: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
