# Serve the built repository with the NGC tritonserver image (native ONNX Runtime backend,
# GPU when the host has one). Build the repository first, on the host or in CI:
#
#   make repo                      # or: build-repo models.yaml
#   docker build -t triton-pack-models .
#   docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 triton-pack-models
#
# The same image serves a repository in object storage (what `triton-pack deploy` renders):
#   docker run … -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_DEFAULT_REGION \
#     triton-pack-models tritonserver --model-repository=s3://bucket/models/<hash>
#
# 24.10 is tritonserver 2.51.0, the same release `triton-pack serve` runs locally.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# What the Python-backend members import (tokenizer and post-processing); numpy<2 because
# the Python backend stub corrupts tensors with numpy 2.
RUN python3 -m pip install --no-cache-dir "tokenizers>=0.20,<1" "numpy<2"

# triton-pack itself, for the pods' exec probes (`triton-pack probe`: a real inference on
# every model) and the API front's image: the package without its build dependencies
# (torch, transformers, onnx), plus what the probe and the CLI import. The image's Python is
# 3.10 (Ubuntu 22.04) while the project declares 3.11 (its build and test environment), hence
# --ignore-requires-python for these import-only modules. Checked without Docker: these
# packages alone, in a fresh Python 3.11 venv, run `triton-pack probe` (not on 3.10).
COPY pyproject.toml README.md /opt/triton-pack/
COPY builder /opt/triton-pack/builder
COPY clients /opt/triton-pack/clients
COPY python_backends /opt/triton-pack/python_backends
COPY templates /opt/triton-pack/templates
RUN python3 -m pip install --no-cache-dir "pydantic>=2.7,<3" "pyyaml>=6" "jinja2>=3.1" \
        "protobuf>=4.25,<5" "tritonclient[http,grpc]==2.51.0" "boto3>=1.34" \
    && python3 -m pip install --no-cache-dir --no-deps --ignore-requires-python /opt/triton-pack \
    && triton-pack probe --help > /dev/null

COPY model_repository /models

EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models"]
