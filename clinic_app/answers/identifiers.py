"""Patient identifiers in free text: phone numbers, e-mail addresses, record numbers, dates of
birth, SSNs and NHS numbers.

The ask page runs the same detector before a question is sent (``static/js/identifiers.js``),
with the patterns below handed to it by :func:`browser_config`: one set of regular expressions,
written in the syntax that Python's ``re`` and JavaScript's ``RegExp`` read alike (no ``\\w``
or ``\\s``, whose meaning differs; ``\\d`` and ``\\b`` are ASCII in both under ``re.ASCII``).
The checks after matching (digit counts, the NHS checksum, overlaps) are short and mirrored in
the script; tests run one list of cases through both.

Detection is deliberately tuned against clinical text: scores (CHA2DS2-VASc 2), ratios (BP
140/90), ranges (INR 2-3), doses, years and guideline ids must not trigger it, so bare dates
and short numbers are never flagged; dates count only after a birth label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PHONE = "phone"
EMAIL = "email"
MRN = "mrn"
DOB = "dob"
SSN = "ssn"
NHS = "nhs"

# What the page calls each kind, and what "Remove them" puts in its place.
LABELS = {
    PHONE: "phone number",
    EMAIL: "e-mail address",
    MRN: "medical record number",
    DOB: "date of birth",
    SSN: "social security number",
    NHS: "NHS number",
}
PLACEHOLDERS = {
    PHONE: "[phone]",
    EMAIL: "[email]",
    MRN: "[record number]",
    DOB: "[date of birth]",
    SSN: "[SSN]",
    NHS: "[NHS number]",
}

_SEP = r"[ \t]*[:#]?[ \t]*"  # between a label and its value: "MRN 1", "MRN: 1", "MRN#1"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    r"(?:[0-9]{1,2}[/.-][0-9]{1,2}[/.-](?:[0-9]{4}|[0-9]{2})"
    r"|[0-9]{4}[/.-][0-9]{1,2}[/.-][0-9]{1,2}"
    rf"|[0-9]{{1,2}}(?:st|nd|rd|th)?[ \t]+{_MONTH}[ \t]+[0-9]{{4}}"
    rf"|{_MONTH}[ \t]+[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ \t]+[0-9]{{4}})"
)


@dataclass(frozen=True)
class IdentifierPattern:
    """One way an identifier is written. Group 1 of ``source`` is the identifier itself (a
    label before it, such as "MRN", is context and stays in the text).

    ``min_digits``/``max_digits`` bound the digits in the value (0: unbounded);
    ``checksum="nhs"`` keeps only values whose NHS modulus-11 check digit is right.
    """

    kind: str
    source: str
    min_digits: int = 0
    max_digits: int = 0
    checksum: str = ""


# In priority order: where two matches overlap, the earlier pattern wins (so a labelled value
# is named by its label, and a valid NHS number is not reported as a phone number too).
PATTERNS: tuple[IdentifierPattern, ...] = (
    IdentifierPattern(
        EMAIL,
        r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})",
    ),
    IdentifierPattern(
        DOB,
        r"\b(?:DOB|D\.O\.B\.?|date[ \t]+of[ \t]+birth|birth[ \t]?date|born(?:[ \t]+on)?)"
        rf"{_SEP}({_DATE})(?![0-9])",
    ),
    IdentifierPattern(
        MRN,
        r"\b(?:MRN|medical[ \t]+record(?:[ \t]+(?:number|no\.?))?|hospital[ \t]+(?:number|no\.?)"
        r"|record[ \t]+(?:number|no\.?)|patient[ \t]+(?:id|number|no\.?)"
        r"|chart[ \t]+(?:number|no\.?))"
        rf"{_SEP}([A-Za-z]{{0,3}}[0-9][0-9-]{{2,18}}[0-9])(?![0-9])",
        min_digits=4,
    ),
    IdentifierPattern(
        NHS,
        rf"\bNHS(?:[ \t]+(?:number|no\.?))?{_SEP}"
        r"([0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4})(?![0-9])",
    ),
    IdentifierPattern(
        SSN,
        r"\b(?:SSN|social[ \t]+security(?:[ \t]+(?:number|no\.?))?)"
        rf"{_SEP}([0-9]{{3}}[ -]?[0-9]{{2}}[ -]?[0-9]{{4}})(?![0-9])",
    ),
    IdentifierPattern(
        PHONE,
        r"\b(?:phone|telephone|tel|mobile|contact[ \t]+number)\.?(?:[ \t]+(?:number|no\.?))?"
        rf"{_SEP}(\+?[0-9(][0-9 ().-]{{5,18}}[0-9])(?![0-9])",
        min_digits=7,
        max_digits=15,
    ),
    IdentifierPattern(SSN, r"(?<![0-9-])([0-9]{3}-[0-9]{2}-[0-9]{4})(?![0-9-])"),
    IdentifierPattern(
        NHS,
        r"(?<![0-9A-Za-z.+-])([0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4})(?![0-9])",
        checksum="nhs",
    ),
    # International: +44 7700 900123, +1 (555) 123-4567.
    IdentifierPattern(
        PHONE,
        r"(?<![0-9A-Za-z+])(\+[0-9]{1,3}(?:[ .-]?(?:\([0-9]{1,5}\)|[0-9]{2,6})){1,5})(?![0-9])",
        min_digits=10,
        max_digits=15,
    ),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567.
    IdentifierPattern(
        PHONE,
        r"(?<![0-9A-Za-z])(\([0-9]{3}\)[ .-]?[0-9]{3}[ .-]?[0-9]{4}"
        r"|[0-9]{3}([.-])[0-9]{3}\2[0-9]{4}|[0-9]{3} [0-9]{3} [0-9]{4})(?![0-9])",
    ),
    # National with a trunk 0: 020 7946 0958, 0161 496 0000, 07700 900123.
    IdentifierPattern(
        PHONE,
        r"(?<![0-9A-Za-z.,/-])(0[0-9]{2,4}[ -]?[0-9]{3,4}[ -]?[0-9]{3,4})(?![0-9])",
        min_digits=10,
        max_digits=11,
    ),
    # Any other run of 10-11 digits on its own: no dose, score or year is that long.
    IdentifierPattern(
        PHONE,
        r"(?<![0-9A-Za-z.,/-])([0-9]{10,11})(?![0-9])",
    ),
)

_FLAGS = re.ASCII | re.IGNORECASE
_COMPILED = tuple((p, re.compile(p.source, _FLAGS)) for p in PATTERNS)


@dataclass(frozen=True)
class Found:
    """An identifier at ``text[start:end]``."""

    kind: str
    start: int
    end: int
    text: str


def nhs_checksum_ok(digits: str) -> bool:
    """Whether ten digits carry a valid NHS number check digit (modulus 11)."""
    if len(digits) != 10 or any(c not in "0123456789" for c in digits):
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def _accept(pattern: IdentifierPattern, value: str) -> bool:
    digits = "".join(c for c in value if c in "0123456789")
    if pattern.min_digits and len(digits) < pattern.min_digits:
        return False
    if pattern.max_digits and len(digits) > pattern.max_digits:
        return False
    return not (pattern.checksum == "nhs" and not nhs_checksum_ok(digits))


def find_identifiers(text: str) -> list[Found]:
    """Every identifier in ``text``, in order of position, without overlaps."""
    found: list[Found] = []
    for pattern, regex in _COMPILED:
        for match in regex.finditer(text):
            start, end = match.span(1)
            if not _accept(pattern, match.group(1)):
                continue
            if any(start < f.end and f.start < end for f in found):
                continue
            found.append(Found(pattern.kind, start, end, match.group(1)))
    return sorted(found, key=lambda f: f.start)


def identifier_kinds(text: str) -> list[str]:
    """The kinds of identifier in ``text``, sorted, each once (never the values)."""
    return sorted({f.kind for f in find_identifiers(text)})


def redact(text: str) -> str:
    """``text`` with each identifier replaced by its kind's placeholder (what "Remove them"
    does on the page)."""
    parts: list[str] = []
    position = 0
    for f in find_identifiers(text):
        parts.append(text[position : f.start])
        parts.append(PLACEHOLDERS[f.kind])
        position = f.end
    parts.append(text[position:])
    return "".join(parts)


def browser_config() -> dict[str, Any]:
    """The patterns, labels and placeholders for the page's detector (``json_script``)."""
    return {
        "patterns": [
            {
                "kind": p.kind,
                "source": p.source,
                "min_digits": p.min_digits,
                "max_digits": p.max_digits,
                "checksum": p.checksum,
            }
            for p in PATTERNS
        ],
        "labels": LABELS,
        "placeholders": PLACEHOLDERS,
    }
