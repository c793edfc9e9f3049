"""Triton Python model: TEXT (or a pair: TEXT and TEXT_PAIR, QUERY and TEXT) -> token tensors,
with the HF tokenizer in this version folder.

The dynamic batcher hands ``execute`` several requests at once: their texts are tokenized in
one call and padded to one length (the longest, rounded up to the ``bucket`` parameter), so
every response of the batch has the same shape and the model member's batcher can merge them.
A request with bad input gets its own error; the others are answered. With two text inputs
(the ``text_inputs`` parameter), row i of both is one pair, tokenized as the tokenizer joins
pairs and truncated ``longest_first`` (as transformers' ``tokenizer(a, b, truncation=True)``).
"""

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
        self.pad_id = int(params["pad_id"])
        self.bucket = int(params.get("bucket", "1"))
        text_ops.configure_tokenizer(self.tokenizer, self.max_length)
        # [[output name, tokenizers Encoding field], ...], from the architecture's registry entry
        self.fields = [tuple(pair) for pair in json.loads(params["encoding_fields"])]
        # the text inputs: ["TEXT"], or a pair such as ["TEXT", "TEXT_PAIR"]
        self.inputs = json.loads(params.get("text_inputs", '["TEXT"]'))

    def _read(self, request, name):
        raw = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
        return text_ops.decode_texts(raw, self.max_bytes, name)

    def _texts(self, request):
        if len(self.inputs) == 1:
            texts = self._read(request, self.inputs[0])
            return text_ops.cut_texts(self.tokenizer, texts, self.max_length)
        first, second = (self._read(request, name) for name in self.inputs)
        if len(first) != len(second):
            raise text_ops.BadInput(
                f"{self.inputs[0]} has {len(first)} rows but {self.inputs[1]} has "
                f"{len(second)}: one pair per row"
            )
        pairs = list(zip(first, second, strict=True))
        return text_ops.cut_pairs(self.tokenizer, pairs, self.max_length)

    def execute(self, requests):
        responses = [None] * len(requests)
        batch, rows = [], []  # every good request's texts, and (request index, start, stop)
        for index, request in enumerate(requests):
            try:
                texts = self._texts(request)
            except text_ops.BadInput as exc:  # the client's fault: HTTP 400, INVALID_ARGUMENT
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                continue
            except Exception as exc:  # ours: INTERNAL for this request; the others go on
                error = pb_utils.TritonError(f"tokenizer failed: {type(exc).__name__}: {exc}")
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                continue
            rows.append((index, len(batch), len(batch) + len(texts)))
            batch.extend(texts)
        if rows:
            try:
                arrays = text_ops.tokenize(
                    self.tokenizer, batch, self.fields, self.pad_id, self.bucket, self.max_length
                )
            except Exception as exc:  # ours: INTERNAL, for the requests of this batch
                error = pb_utils.TritonError(f"tokenizer failed: {type(exc).__name__}: {exc}")
                for index, _, _ in rows:
                    responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                return responses
            for index, start, stop in rows:
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(array[start:stop]))
                    for name, array in arrays.items()
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
