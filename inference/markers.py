"""Citation markers, in one place: how an answer cites its numbered sources.

The model is asked to cite as ``[S1]``; it also writes ``[S1, S2]``, ``[s 3; 4]`` and, in
PubMedQA answers, bare ``[1]``. ``check_answer`` rewrites every group it accepts into
normalised markers (``[S1][S2]``), which is all that the page (``static/js/ask.js``) and the
prompt history ever read.
"""

from __future__ import annotations

import re

# A group of one or more source numbers, "S" required on the first: [S1], [S1, S2], [s 3; 4].
# Group 1 holds the numbers' text (read them with ``marker_numbers``).
CITATION_GROUP = re.compile(r"\[\s*(S\s*\d+(?:\s*[,;]\s*S?\s*\d+)*)\s*\]", re.IGNORECASE)
# The same, "S" optional: also [1] and [1, 2] (evaluation reads answers that cite that way).
LOOSE_CITATION_GROUP = re.compile(r"\[\s*S?\s*\d+(?:\s*[,;]\s*S?\s*\d+)*\s*\]", re.IGNORECASE)
# One normalised marker with the spaces before it, as check_answer writes them.
MARKER = re.compile(r"\s*\[S\d+\]")
_NUMBER = re.compile(r"\d+")


def marker_numbers(group: str) -> list[int]:
    """The source numbers in a group's text (``CITATION_GROUP``'s group 1), in order."""
    return [int(n) for n in _NUMBER.findall(group)]


def markers_remove(text: str, *, loose: bool = False) -> str:
    """``text`` with every citation group replaced by a space (``loose``: bare [1] too)."""
    return (LOOSE_CITATION_GROUP if loose else CITATION_GROUP).sub(" ", text)
