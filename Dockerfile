# Serve the built repository with the NGC tritonserver image (native ONNX Runtime backend,
# GPU when the host has one). Build the repository first, on the host or in CI:
#
#   make repo                      # or: build-repo models.yaml
#   docker build -t triton-pack-models .
#   docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 triton-pack-models
#
# 24.10 is tritonserver 2.51.0, the same release `triton-pack serve` runs locally.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# What the Python-backend members import (tokenizer and post-processing); numpy<2 because
# the Python backend stub corrupts tensors with numpy 2.
RUN python3 -m pip install --no-cache-dir "tokenizers>=0.20,<1" "numpy<2"

COPY model_repository /models

EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models"]
