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
        text_ops.configure_tokenizer(
            self.tokenizer,
            max_length=int(params["max_sequence_length"]),
            pad_id=int(params["pad_id"]),
            pad_token=params["pad_token"],
        )
        # [[output name, tokenizers Encoding field], ...], from the architecture's registry entry
        self.fields = [tuple(pair) for pair in json.loads(params["encoding_fields"])]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
                texts = text_ops.decode_texts(raw)
                arrays = text_ops.tokenize(self.tokenizer, texts, self.fields)
            except (UnicodeDecodeError, ValueError) as exc:
                error = pb_utils.TritonError(f"TEXT: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(a)) for n, a in arrays.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
