"""Parts of ``benchmarks/bench_side_by_side.py`` (not run by CI, not part of the product).

- ``corpus``: the texts every system gets (a seeded generator, or a file).
- ``loadgen``: the closed-loop HTTP load generator and a trivial endpoint to measure it.
- ``plain``: the plain ONNX export (``last_hidden_state``) that the baseline and the
  in-process ceiling share, the in-process embedder and the sentence-transformers reference.
- ``served``: starting and stopping the Triton systems (the built ensemble, the hand-written
  baseline).
- ``infinity``: infinity-emb in its own throwaway venv: install, export, optimise, serve.
"""


class NotMeasured(Exception):
    """A system could not be set up or started; the table shows the reason in its row."""
