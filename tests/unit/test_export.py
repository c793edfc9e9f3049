"""builder.export: what can be checked without exporting (exports run in tests/integration)."""

from __future__ import annotations

import pytest

from builder.export import _reraise_interruption


def test_an_interruption_wrapped_by_torch_unwinds_as_itself() -> None:
    try:
        try:
            raise KeyboardInterrupt
        except BaseException as inner:
            raise RuntimeError("torch wrapped it") from inner
    except RuntimeError as wrapped:
        with pytest.raises(KeyboardInterrupt):
            _reraise_interruption(wrapped)
    _reraise_interruption(ValueError("a real export error"))  # returns: not an interruption
