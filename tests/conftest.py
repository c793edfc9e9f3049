"""Shared fixtures. `gpu` tests are skipped, with the reason, where CUDA is absent."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _cuda_available() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
