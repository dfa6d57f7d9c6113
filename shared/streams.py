"""Redis stream and consumer-group names: the only place they are spelled.

    notes -> [segmenter] -> spans -> [retriever] -> candidates -> [verifier] -> verdicts
          -> [aggregator] -> codes

A stage that gives up on a message writes it to the dead-letter stream.
"""

from __future__ import annotations

from dataclasses import dataclass

NOTES = "icdcoder:notes"
SPANS = "icdcoder:spans"
CANDIDATES = "icdcoder:candidates"
VERDICTS = "icdcoder:verdicts"
CODES = "icdcoder:codes"
DEAD_LETTER = "icdcoder:dead-letter"


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: the stream it reads, its consumer group, the stream it writes."""

    name: str
    source: str
    group: str
    sink: str


STAGES: dict[str, Stage] = {
    "segmenter": Stage("segmenter", NOTES, "segmenter", SPANS),
    "retriever": Stage("retriever", SPANS, "retriever", CANDIDATES),
    "verifier": Stage("verifier", CANDIDATES, "verifier", VERDICTS),
    "aggregator": Stage("aggregator", VERDICTS, "aggregator", CODES),
}
