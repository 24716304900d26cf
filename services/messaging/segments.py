"""How an SMS body goes on the air: its encoding and how many parts (segments) it takes.

GSM-7 when every character is in the GSM 03.38 alphabet (the `gsm0338` package's tables: the basic
set, and the extension set whose characters take two septets, an escape and the character), else UCS-2.
No character is substituted: one smart quote makes the whole message UCS-2, as carriers send it.

A message that fits one part takes 160 septets (GSM-7) or 70 UTF-16 units (UCS-2); a longer one is
sent in parts of 153 septets or 67 units (the rest of each part is the concatenation header). A
character is never split across two parts: an extension character (2 septets) or an emoji (a surrogate
pair, 2 units) that would straddle a boundary starts the next part, so 153 `]` take three parts.

Counting is on SendMessage's hot path: the tables are sets made once, and a body is walked character
by character only when it is long and holds two-unit characters, the only case where the boundaries
matter.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from gsm0338.charset import BASIC_CHARACTER_SET, BASIC_CHARACTER_SET_EXTENSION

GSM7, UCS2 = "GSM7", "UCS2"
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

_ESCAPE = "\x1b"  # the basic set's escape to the extension set: no character of its own
GSM_BASIC = frozenset(unicodedata.lookup(name) for name in BASIC_CHARACTER_SET.values()) - {_ESCAPE}
GSM_EXTENSION = frozenset(unicodedata.lookup(name) for name in BASIC_CHARACTER_SET_EXTENSION.values())
GSM_ALL = GSM_BASIC | GSM_EXTENSION


@dataclass(frozen=True)
class Segments:
    encoding: str  # GSM7 or UCS2
    count: int
    units: int  # septets (GSM-7) or UTF-16 units (UCS-2)


def _parts(widths: list[int] | tuple[int, ...], per_part: int) -> int:
    """Parts needed for characters of these widths when none may straddle two parts."""
    parts, used = 1, 0
    for width in widths:
        if used + width > per_part:
            parts, used = parts + 1, 0
        used += width
    return parts


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def count(body: str) -> Segments:
    """The encoding and number of segments of `body` (an empty body is one segment)."""
    characters = set(body)
    if characters <= GSM_BASIC:
        septets = len(body)
        return Segments(GSM7, 1 if septets <= GSM7_SINGLE else _ceil_div(septets, GSM7_PART), septets)
    if characters <= GSM_ALL:
        extended = characters & GSM_EXTENSION
        septets = len(body) + sum(body.count(c) for c in extended)
        if septets <= GSM7_SINGLE:
            return Segments(GSM7, 1, septets)
        return Segments(GSM7, _parts([2 if c in extended else 1 for c in body], GSM7_PART), septets)
    units = len(body.encode("utf-16-le")) // 2
    if units <= UCS2_SINGLE:
        return Segments(UCS2, 1, units)
    if units == len(body):  # no surrogate pairs: every character is one unit
        return Segments(UCS2, _ceil_div(units, UCS2_PART), units)
    return Segments(UCS2, _parts([2 if ord(c) > 0xFFFF else 1 for c in body], UCS2_PART), units)
