"""The hand-written baseline: all-MiniLM-L6-v2 embeddings in one Triton Python model.

What a competent user writes by hand, without triton-pack: gather the texts of every request
the dynamic batcher handed over, tokenize them with ``tokenizers`` (the model's
tokenizer.json, truncation at 256 tokens as sentence-transformers does, padding to the
longest), run ONNX Runtime with default session options on a plain export that gives
``last_hidden_state``, mean-pool over the attention mask and L2-normalise in numpy, and answer
every request with its rows. ``bench_side_by_side.py`` serves it beside the built ensemble.
"""

import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")  # to the longest
        self.session = ort.InferenceSession(
            os.path.join(here, "model.onnx"), providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}

    def execute(self, requests):
        texts, counts = [], []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            texts.extend(t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw)
            counts.append(len(raw))
        try:
            embeddings = self._embed(texts)
        except Exception as exc:  # every request of the batch gets the error
            error = pb_utils.TritonError(f"embedding failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for count in counts:
            rows = np.ascontiguousarray(embeddings[start : start + count])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", rows)]))
            start += count
        return responses

    def _embed(self, texts):
        encodings = self.tokenizer.encode_batch(texts)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {name: value for name, value in feeds.items() if name in self.input_names}
        hidden = self.session.run(["last_hidden_state"], feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
