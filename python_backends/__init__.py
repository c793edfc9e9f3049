"""Code that runs inside tritonserver's Python backend.

``text_ops`` holds the pure functions (numpy and ``tokenizers`` only, unit-tested without
Triton); ``tokenizer/model.py`` and ``postprocess/model.py`` are thin Triton models copied into
the repository next to a copy of ``text_ops.py``; ``onnxruntime/model.py`` is the CPU stand-in
for Triton's native ONNX Runtime backend that ``triton-pack serve`` installs locally.
"""
