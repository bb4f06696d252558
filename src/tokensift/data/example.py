"""The one record every input format is normalised to."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class PreferenceExample:
    """One preference pair.

    prompt:   chat messages before the reply, `[{"role": ..., "content": ...}, ...]`; never empty; the last
              message is not an assistant turn.
    chosen:   the preferred assistant reply (plain text, the content of the final assistant turn).
    rejected: the dispreferred assistant reply.
    row:      0-based index of the row in its source (stable key for caches, scores and rejects files).
    metadata: anything else the row carried (ids, source models, judge scores), kept as is.
    """

    prompt: list[dict]
    chosen: str
    rejected: str
    row: int
    metadata: dict = field(default_factory=dict)
