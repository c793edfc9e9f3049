"""A CPU stand-in for Triton's native ONNX Runtime backend, as a Python-based backend.

tritonserver loads ``<backend dir>/onnxruntime/model.py`` for any config that says
``backend: "onnxruntime"``, so the repository's config is the one the NGC image serves
natively. Requests that the dynamic batcher grouped and whose shapes agree run as one batch.

Idle threads are lent (local serving only; the native backend has no such thing). The
config's ``intra_op_thread_count`` sizes each instance for the time when every instance is
busy: N instances of T threads share N x T cores. When this instance is the only one running,
the others' threads would sit idle, so it runs on a second session of N x T threads instead
(one request alone is then about 1.8x faster on 2 cores; throughput under load is unchanged,
because under load another instance is always running). The instances are separate stub
processes; they tell each other that they are running through a small shared file in the
backend folder (``_Siblings``). The config parameter ``lend_idle_threads: "false"`` turns
this off.
"""

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


class _Siblings:
    """When each of one model's instances (each a stub process) last ran, shared through a
    mapped file: per slot, the pid that holds it and the monotonic time (ns) until which
    the instance counts as running: far in the future while it runs a batch, ``GRACE_NS``
    after the end of its last one (under load the next batch follows within that, so a
    sibling between two batches still counts as running). The slots of processes that are
    gone (a killed stub) are cleared when an instance starts. Each value is one aligned
    8-byte word, so a race costs at most a less good choice of session, never a wrong
    answer."""

    GRACE_NS = 1_000_000
    _RUNNING = 1 << 62

    def __init__(self, path):
        size = 16 * _SLOTS
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
            self._until = np.frombuffer(self._map, dtype=np.int64, count=_SLOTS)
            self._pids = np.frombuffer(self._map, dtype=np.int64, count=_SLOTS, offset=8 * _SLOTS)
            for slot, pid in enumerate(self._pids):  # killed stubs: their marks go with them
                if pid != 0 and not _alive(int(pid)):
                    self._pids[slot] = self._until[slot] = 0
            free = [i for i, pid in enumerate(self._pids) if pid == 0]
            if not free:
                raise RuntimeError(f"{path}: every slot is held by a running process")
            self._slot = free[0]
            self._pids[self._slot] = os.getpid()
            self._until[self._slot] = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def others_running(self):
        now = time.monotonic_ns()
        mine = self._until[self._slot]
        self._until[self._slot] = 0
        try:
            return bool((self._until > now).any())
        finally:
            self._until[self._slot] = mine

    def running(self, flag):
        self._until[self._slot] = self._RUNNING if flag else time.monotonic_ns() + self.GRACE_NS

    def close(self):
        self._until[self._slot] = 0
        self._pids[self._slot] = 0
        del self._until, self._pids
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
            try:
                self.siblings = _Siblings(os.path.join(here, f".running-{config['name']}"))
            except OSError:  # a read-only backend folder: no lending, fixed threads
                self.siblings = None
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
        if self.siblings is None:
            for members in groups.values():
                self._run_group(self.session, members, responses)
            return responses
        self.siblings.running(True)
        try:
            for members in groups.values():
                alone = not self.siblings.others_running()
                self._run_group(self.solo if alone else self.session, members, responses)
        finally:
            self.siblings.running(False)
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
