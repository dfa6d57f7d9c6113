"""The bus: stages as FastStream workers on Redis streams, by role.

    notes -> [segmenter] -> spans -> [retriever] -> candidates -> [verifier] -> verdicts
          -> [aggregator] -> codes          (any stage) -> dead-letter

- :mod:`~icdcoder.shared.bus.wire`: the entry format, and reading what producers wrote;
- :mod:`~icdcoder.shared.bus.admin`: the Redis client, streams and groups;
- :mod:`~icdcoder.shared.bus.outbox`: ack + publish in one Lua script;
- :mod:`~icdcoder.shared.bus.worker`: a stage as a FastStream app, dead letters, reclaiming;
- :mod:`~icdcoder.shared.bus.serve`: running it under uvicorn;
- :mod:`~icdcoder.shared.bus.metrics`, :mod:`~icdcoder.shared.bus.docs`: /metrics, /asyncapi;
- :mod:`~icdcoder.shared.bus.client`: submit, follow results, status.

docs/bus.md has the guarantees and the reasoning.
"""
