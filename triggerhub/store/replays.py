"""Replay marks: which (rule, event) pairs were replayed, claimed in the transaction that accepts
the replayed invocation, so a replay runs each event through a rule once unless it is forced.

`claim` is called by both accept operations (`operations.accept`, `direct.accept`); it touches
only acceptances that carry a `ReplayClaim`, so fires and invokes pay one attribute read.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from triggerhub.model import now_ms
from triggerhub.store.base import Acceptance

_INSERT = ("INSERT INTO replays (rule, event_id, event_ms, runs, activation_id, replayed_ms) "
           "VALUES (:rule, :event_id, :event_ms, 1, :activation_id, :replayed_ms) ON CONFLICT (rule, event_id) ")
CLAIM = text(_INSERT + "DO NOTHING RETURNING event_id")
CLAIM_AGAIN = text(_INSERT + "DO UPDATE SET runs = replays.runs + 1, activation_id = excluded.activation_id, "
                   "replayed_ms = excluded.replayed_ms RETURNING event_id")


def claim(conn: Connection, batch: Sequence[Acceptance], answers: list[bool]) -> list[bool]:
    """`answers` with every acceptance whose replay mark was taken before (and is not forced)
    turned False. Row by row: one statement may not touch a row twice (two claims of one pair
    in a batch: the first wins)."""
    out = []
    for acceptance, accepted in zip(batch, answers, strict=True):
        mark = acceptance.replay
        if mark is None or not accepted:
            out.append(accepted)
            continue
        row = conn.execute(CLAIM_AGAIN if mark.force else CLAIM, {
            "rule": mark.rule, "event_id": mark.event_id, "event_ms": mark.event_ms,
            "activation_id": mark.activation_id, "replayed_ms": now_ms()}).first()
        out.append(row is not None)
    return out
