"""The ten segment ids of the contracts (DESIGN.md): a tier (first, fledgling, steady, trendy,
loyal) and a state (active, lapsed). Every event that names a segment types it as ``Segment``,
so a message with any other id is not one of ours and goes to the dead-letter topic."""

from __future__ import annotations

from typing import Literal, get_args

Segment = Literal[
    "first_active",
    "first_lapsed",
    "fledgling_active",
    "fledgling_lapsed",
    "steady_active",
    "steady_lapsed",
    "trendy_active",
    "trendy_lapsed",
    "loyal_active",
    "loyal_lapsed",
]
SEGMENTS: tuple[str, ...] = get_args(Segment)
