"""The ONNX Runtime stand-in's shared running state (`_Siblings`): how one model's instances,
each a stub process, tell each other what they are doing, so that an instance running alone
borrows the idle ones' threads and never does under load. Real files, threads and processes;
only the backend's utility module, which the class never touches, is a placeholder so that
the stand-in module imports outside Triton."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
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


def batch(siblings: Any) -> bool:
    """One batch from start to end; whether it ran on the borrowed threads."""
    alone = bool(siblings.begin())
    siblings.end()
    return alone


def test_an_instance_borrows_only_after_calm_batches_and_never_beside_a_busy_sibling(
    stand_in: Any, tmp_path: Path
) -> None:
    path = tmp_path / ".running-m_onnx"
    first, second = stand_in._Siblings(path), stand_in._Siblings(path)
    try:
        assert (first._slot, second._slot) == (0, 1)  # both live: each has its own slot
        calm = stand_in._Siblings.CALM_BATCHES
        # one request at a time, taking turns: alone once each has had its calm batches
        turns = [batch(instance) for _ in range(calm + 2) for instance in (first, second)]
        assert turns == [False] * (2 * calm) + [True] * 4
        assert (int(first._alone[0]), int(second._alone[1])) == (2, 2)  # counted in the file
        # a batch that starts while a sibling runs does not borrow...
        assert first.begin()
        second_alone = second.begin()
        first.end()
        second.end()
        assert not second_alone
        # ...and both saw the overlap: neither borrows until calm again
        assert (first.calm, second.calm) == (0, 0)
        assert not batch(first)
    finally:
        first.close()
        second.close()
    third = stand_in._Siblings(path)  # closed slots are free again
    try:
        assert third._slot == 0
    finally:
        third.close()


def test_a_sibling_waits_for_a_run_alone_to_end(stand_in: Any, tmp_path: Path) -> None:
    path = tmp_path / ".running-m_onnx"
    first, second = stand_in._Siblings(path), stand_in._Siblings(path)
    try:
        first.calm = stand_in._Siblings.CALM_BATCHES
        assert first.begin()  # running alone on the borrowed threads
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(bool(second.begin())))
        waiter.start()
        deadline = time.monotonic() + 30
        while int(second._state[1]) != stand_in.WAITING and time.monotonic() < deadline:
            time.sleep(0.001)
        assert int(second._state[1]) == stand_in.WAITING
        assert not result  # still waiting: no third thread on the cores
        first.end()
        waiter.join(30)
        assert result == [False]  # it ran on its own thread, after the run alone
        second.end()
        assert (first.calm, second.calm) == (0, 0)  # the wait was an overlap for both
    finally:
        first.close()
        second.close()


def run_and_die(path: Path, state: str) -> None:
    """A stub that takes slot 1, marks itself ``state`` and is killed mid-batch."""
    code = (
        "import importlib.util, sys, types, os\n"
        "sys.modules['triton_python_backend_utils'] = types.ModuleType('x')\n"
        f"spec = importlib.util.spec_from_file_location('s', {str(STAND_IN)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"s = m._Siblings({str(path)!r}); assert s._slot == 1\n"
        f"s._state[s._slot] = m.{state}; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_marks_of_a_killed_stub_are_cleared_when_an_instance_starts(
    stand_in: Any, tmp_path: Path
) -> None:
    path = tmp_path / ".running-m_onnx"
    live = stand_in._Siblings(path)  # slot 0
    run_and_die(path, "RUNNING")
    try:
        assert live._busy()  # the dead stub's mark is still there...
    finally:
        live.close()
    restarted = stand_in._Siblings(path)  # ...until an instance starts
    try:
        assert restarted._slot == 0
        assert not restarted._busy()
        assert int(restarted._pids[1]) == 0
    finally:
        restarted.close()


def test_a_wait_for_a_killed_sibling_ends_and_clears_its_mark(
    stand_in: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".running-m_onnx"
    live = stand_in._Siblings(path)
    run_and_die(path, "RUNNING_ALONE")
    monkeypatch.setattr(stand_in._Siblings, "MAX_WAIT_S", 0.05)
    try:
        assert not live.begin()  # waited in vain, then ran on its own thread
        live.end()
        assert int(live._pids[1]) == 0 and not live._busy()  # the dead mark is gone
    finally:
        live.close()
