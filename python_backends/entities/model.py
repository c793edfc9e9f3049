"""Triton Python model: a text, its tokens and their label probabilities -> ENTITIES, a JSON
list per text equal to transformers' token-classification pipeline (``token_ops``).

Inputs: TEXT (as sent: offsets index it), input_ids, attention_mask, offsets and
special_tokens_mask from the tokenizer member, TOKEN_SCORES from the graph (softmax per token).
The tokenizer (``tokenizer.json`` in this version folder) joins tokens into words.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import text_ops
import token_ops
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

_TENSORS = ("input_ids", "attention_mask", "offsets", "special_tokens_mask", "TOKEN_SCORES")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.dirname(os.path.abspath(__file__))
        tokenizer = Tokenizer.from_file(os.path.join(here, params["tokenizer_file"]))
        unk = params.get("unk_id", "")
        self.vocab = token_ops.vocabulary(tokenizer, int(unk) if unk else None)
        self.labels = json.loads(params["labels"])
        self.aggregation = params["aggregation"]

    def _one(self, request):
        texts = text_ops.decode_texts(pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy())
        ids, mask, offsets, special, scores = (
            pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in _TENSORS
        )
        rows = []
        for row, text in enumerate(texts):
            length = int(mask[row].sum())  # right-padded: the text's tokens come first
            found = token_ops.entities(
                text,
                ids[row, :length].tolist(),
                offsets[row, :length],
                special[row, :length].tolist(),
                scores[row, :length],
                self.labels,
                self.aggregation,
                self.vocab,
            )
            rows.append([json.dumps(found, ensure_ascii=False).encode("utf-8")])
        return np.array(rows, dtype=np.object_).reshape(len(texts), 1)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tensor = pb_utils.Tensor("ENTITIES", self._one(request))
            except text_ops.BadInput as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            except ValueError as exc:  # ours: INTERNAL
                error = pb_utils.TritonError(f"entities failed: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
