"""The outbox layout both backends share (schema version 3): one entry per write, sparse marks per stream.

A write that notifies a hundred subscriptions records **one** log entry: its position ``seq`` (never
reused), when it was recorded, the payload, and the streams it is on with each stream's event number
(numbered in the write's own transaction, without gaps). Recording a hundred rows, each with its own
index entries scattered over the index, was most of what a notifying write cost (schema version 2).

Reading one stream's events by number needs a way into the log: a **mark** (stream, number -> seq) is
written for a stream's event when the stream's previous mark is ``MARK_SPACING`` or more positions
back (so a stream's first event always has one). The greatest mark at or below an event number is
therefore less than ``MARK_SPACING`` positions before that event, and a read looks at windows of
``MARK_SPACING`` positions from there (``read_windows``): each window holds the next wanted event.
A stream on every write gets a mark every ``MARK_SPACING`` writes; a rare one on most of its events.

Trimming a stream only raises its ``trimmed`` number (events up to it are forgotten); log entries go
once every stream on them is trimmed past them (the smallest position still needed, from each
stream's greatest mark at or below its first kept event, bounds what is deleted).
"""

from __future__ import annotations

MARK_SPACING = 64  # positions; also the size of a read window
NO_MARK = -(1 << 62)  # a new stream's "previous mark": its first event is always marked


def needs_mark(seq: int, mark_seq: int) -> bool:
    """Does an event at position ``seq`` get a mark, the stream's previous mark being at ``mark_seq``?"""
    return seq - mark_seq >= MARK_SPACING
