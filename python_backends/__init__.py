"""Code that runs inside tritonserver's Python backend.

``text_ops`` holds the pure functions (numpy and ``tokenizers`` only, unit-tested without
Triton); ``tokenizer/model.py`` and ``postprocess/model.py`` are thin Triton models copied
into the repository next to a copy of ``text_ops.py``. ``stand_ins/<backend>/model.py`` are
Python-based stand-ins for backends a local tritonserver lacks (``onnxruntime``), which
``triton-pack serve`` installs in its backend directory.
"""
