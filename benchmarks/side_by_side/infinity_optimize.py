"""Run with infinity-emb's venv: optimum's ORTOptimizer on an exported ``model.onnx``.

    <infinity venv>/bin/python infinity_optimize.py MODEL_DIR SAVE_DIR

Writes ``SAVE_DIR/model_optimized.onnx`` (with the config and tokenizer files), where
infinity-emb 0.0.78's ONNX engine looks for an optimised graph before it optimises one
itself. Its own attempt passes ``optimize_with_onnxruntime_only`` to optimum's
``OptimizationConfig``, which optimum 2.x no longer takes, so it fails and falls back to the
plain graph; these are its other settings for a CPU (level 99, no fp16).
"""

import sys

from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTOptimizer
from optimum.onnxruntime.configuration import OptimizationConfig


def main(model_dir: str, save_dir: str) -> int:
    model = ORTModelForFeatureExtraction.from_pretrained(
        model_dir, file_name="model.onnx", provider="CPUExecutionProvider"
    )
    config = OptimizationConfig(optimization_level=99, optimize_for_gpu=False, fp16=False)
    ORTOptimizer.from_pretrained(model).optimize(
        optimization_config=config, save_dir=save_dir, one_external_file=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
