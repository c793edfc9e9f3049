"""The ONNX Runtime stand-in's shared running state (`_Siblings`): how one model's instances,
each a stub process, tell each other that they are running, so an instance alone borrows the
idle ones' threads. Real files, real processes; only the backend's utility module, which the
class never touches, is a placeholder so that the stand-in module imports outside Triton."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

STAND_IN = Path(__file__).resolve().parents[2] / "python_backends/stand_ins/onnxruntime/model.py"


@pytest.fixture(scope="module")
def stand_in() -> Any:
    placeholder = types.ModuleType("triton_python_backend_utils")
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = placeholder
    try:
        spec = importlib.util.spec_from_file_location("onnx_stand_in", STAND_IN)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["triton_python_backend_utils"]
        else:
            sys.modules["triton_python_backend_utils"] = saved
    return module


def test_a_sibling_counts_as_running_while_it_runs_and_for_a_grace_after(
    stand_in: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".running-m_onnx"
    first, second = stand_in._Siblings(path), stand_in._Siblings(path)
    try:
        assert (first._slot, second._slot) == (0, 1)  # both live: each gets its own slot
        assert not first.others_running() and not second.others_running()
        second.running(True)
        assert first.others_running()
        assert not second.others_running()  # its own state is not a sibling's
        first.running(True)
        assert first.others_running() and second.others_running()
        # a sibling between two batches still counts as running for GRACE_NS after its end
        monkeypatch.setattr(stand_in._Siblings, "GRACE_NS", 60_000_000_000)
        second.running(False)
        assert first.others_running()
        monkeypatch.setattr(stand_in._Siblings, "GRACE_NS", 0)
        second.running(False)
        time.sleep(0.001)
        assert not first.others_running()
        assert second.others_running()  # first is still running
    finally:
        first.close()
        second.close()
    third = stand_in._Siblings(path)  # closed slots are free again
    try:
        assert third._slot == 0 and not third.others_running()
    finally:
        third.close()


def test_the_marks_of_a_killed_stub_are_cleared_when_an_instance_starts(
    stand_in: Any, tmp_path: Path
) -> None:
    path = tmp_path / ".running-m_onnx"
    live = stand_in._Siblings(path)  # slot 0
    # a stub that took slot 1, said it was running, and was killed mid-batch
    code = (
        "import importlib.util, sys, types, os\n"
        "sys.modules['triton_python_backend_utils'] = types.ModuleType('x')\n"
        f"spec = importlib.util.spec_from_file_location('s', {str(STAND_IN)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"s = m._Siblings({str(path)!r}); assert s._slot == 1; s.running(True); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    try:
        assert live.others_running()  # the dead stub's mark is still there...
    finally:
        live.close()
    restarted = stand_in._Siblings(path)  # ...until an instance starts
    try:
        assert restarted._slot == 0
        assert not restarted.others_running()
        assert int(restarted._pids[1]) == 0
    finally:
        restarted.close()
