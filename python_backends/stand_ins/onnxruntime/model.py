"""A CPU stand-in for Triton's native ONNX Runtime backend, as a Python-based backend.

tritonserver loads ``<backend dir>/onnxruntime/model.py`` for any config that says
``backend: "onnxruntime"``, so the repository's config is the one the NGC image serves
natively. Requests that the dynamic batcher grouped and whose shapes agree run as one batch.

Idle threads are lent (local serving only; the native backend has no such thing). The
config's ``intra_op_thread_count`` sizes each instance for the time when every instance is
busy: N instances of T threads share N x T cores. When this instance runs alone (see
``_Siblings``), the others' threads would sit idle, so it runs on a session of N x T threads
(MiniLM on 2 cores: a lone request's ONNX step 6.5 → 3.7 ms; throughput under load
unchanged, because under load it nearly never runs alone). The instances
are separate stub processes; they tell each other that they are running through a small
shared file in the backend folder (``_Siblings``). The config parameter
``lend_idle_threads: "false"`` turns this off.
"""

import contextlib
import fcntl
import json
import mmap
import os
import time

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_SLOTS = 64  # stub processes one model's shared file has room for


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# an instance's state in the shared file
IDLE, RUNNING, RUNNING_ALONE, WAITING = 0, 1, 2, 3


class _Siblings:
    """What each of one model's instances (each a stub process) is doing, shared through a
    mapped file: per slot, the pid that holds it, its state (IDLE, RUNNING, RUNNING_ALONE on
    the borrowed threads, WAITING), when (monotonic ns) it last started a batch, and how many
    batches it ran alone (for tests and curious operators).

    An instance runs alone when no sibling is busy now and none was busy beside its own last
    ``CALM_BATCHES`` batches: under load the instances' batches overlap, so a sibling that
    happens to be between two batches at the moment of the check does not make it borrow
    (with one calm batch required, 2% of the batches at 16 concurrent requests still ran
    alone, and those cost 4% of the throughput); one request at a time never overlaps,
    however short the gaps between requests. A sibling that gets a batch while one runs
    alone waits for that run to end instead of starting a third thread on the cores (ONNX
    Runtime's parallel loops stall badly when one of their threads is preempted), and the
    wait counts as an overlap for both. The slots of processes that are
    gone (a killed stub) are cleared when an instance starts; a wait never outlasts
    ``MAX_WAIT_S``. Each value is one aligned 8-byte word, so a race costs at most a less
    good choice of session, never a wrong answer."""

    CALM_BATCHES = 3
    MAX_WAIT_S = 0.25
    POLL_S = 0.0002

    def __init__(self, path):
        size = 32 * _SLOTS
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
            words = np.frombuffer(self._map, dtype=np.int64).reshape(4, _SLOTS)
            self._state, self._started, self._pids, self._alone = words
            self._clear_dead()
            free = [i for i, pid in enumerate(self._pids) if pid == 0]
            if not free:
                raise RuntimeError(f"{path}: every slot is held by a running process")
            self._slot = free[0]
            self._free(self._slot)
            self._pids[self._slot] = os.getpid()
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        self._others = np.arange(_SLOTS) != self._slot
        self._start = 0
        self._waited = False
        self.calm = 0  # this instance's last batches in a row that no sibling was busy beside

    def _free(self, slot):
        self._pids[slot] = self._state[slot] = self._started[slot] = self._alone[slot] = 0

    def _clear_dead(self):
        for slot, pid in enumerate(self._pids):  # killed stubs: their marks go with them
            if pid != 0 and not _alive(int(pid)):
                self._free(slot)

    def _busy(self):
        return bool((self._state[self._others] != IDLE).any())

    def begin(self):
        """Mark this instance running; whether it may run on the borrowed threads."""
        deadline = time.monotonic() + self.MAX_WAIT_S
        waited = False
        while (self._state[self._others] == RUNNING_ALONE).any():
            if time.monotonic() > deadline:  # a sibling killed mid-run leaves its mark
                self._clear_dead()
                break
            if not waited:
                self._state[self._slot] = WAITING
                waited = True
            time.sleep(self.POLL_S)
        alone = not waited and self.calm >= self.CALM_BATCHES and not self._busy()
        self._start = time.monotonic_ns()
        self._started[self._slot] = self._start
        self._state[self._slot] = RUNNING_ALONE if alone else RUNNING
        self._alone[self._slot] += alone
        self._waited = waited
        return alone

    def end(self):
        self._state[self._slot] = IDLE
        since = bool((self._started[self._others] > self._start).any())
        overlapped = self._waited or since or self._busy()
        self.calm = 0 if overlapped else self.calm + 1

    def close(self):
        self._free(self._slot)
        del self._state, self._started, self._pids, self._alone
        self._map.close()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        # the native backend's thread parameters, honoured the same way (0 or absent: default)
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        intra = int(params.get("intra_op_thread_count") or 0)
        inter = int(params.get("inter_op_thread_count") or 0)
        self.session = self._open(path, intra, inter)
        self.solo = None
        self.siblings = None
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", []))
        lend = params.get("lend_idle_threads", "true").strip().lower() not in ("false", "0")
        if lend and intra > 0 and instances > 1:
            here = os.path.dirname(os.path.abspath(__file__))
            # a read-only backend folder, or no free slot: fixed threads
            with contextlib.suppress(OSError, RuntimeError):
                self.siblings = _Siblings(os.path.join(here, f".running-{config['name']}"))
            if self.siblings is not None:
                # spinning stops when a run ends, so a sibling that starts next is not slowed
                self.solo = self._open(
                    path, intra * instances, inter, (("session.force_spinning_stop", "1"),)
                )
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]

    @staticmethod
    def _open(path, intra, inter, entries=()):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = intra
        options.inter_op_num_threads = inter
        for key, value in entries:
            options.add_session_config_entry(key, value)
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def finalize(self):
        if self.siblings is not None:
            self.siblings.close()
            self.siblings = None

    def _read(self, request):
        arrays = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            arrays[name] = tensor.as_numpy()
        return arrays

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except ValueError as exc:  # tensors the graph cannot take: the client's fault
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                continue
            key = tuple((n, a.shape[1:]) for n, a in arrays.items())
            groups.setdefault(key, []).append((index, arrays))
        alone = self.siblings is not None and self.siblings.begin()
        try:
            for members in groups.values():
                self._run_group(self.solo if alone else self.session, members, responses)
        finally:
            if self.siblings is not None:
                self.siblings.end()
        return responses

    def _run_group(self, session, members, responses):
        feeds = {n: np.concatenate([a[n] for _, a in members]) for n in self.input_names}
        try:
            results = session.run(self.output_names, feeds)
        except Exception as exc:  # onnxruntime raises its own, unexported types
            for index, _ in members:
                error = pb_utils.TritonError(f"onnxruntime: {exc}")
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
            return
        start = 0
        for index, arrays in members:
            size = len(next(iter(arrays.values())))
            outputs = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start : start + size]))
                for name, result in zip(self.output_names, results, strict=True)
            ]
            responses[index] = pb_utils.InferenceResponse(output_tensors=outputs)
            start += size
