"""The OpenAI- and TEI-compatible HTTP front over a built repository (`triton-pack api`).

A stateless FastAPI app: each route turns one API request into calls on the typed asyncio
clients (gRPC to Triton). ``catalog`` says which served model does which task (from the spec
and the built repository), ``errors`` gives every failure its status and body, ``guard`` holds
the API keys and the per-key token buckets, ``metrics`` the Prometheus counters,
``openai_api`` and ``tei_api`` the routes, ``generation`` the pure chat/SSE helpers, and
``app`` wires them into one ASGI app.
"""
