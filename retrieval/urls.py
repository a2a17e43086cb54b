"""The one check every URL passes before it is stored or linked: http or https, nothing else.

A guideline's URL ends up in an ``href`` on the admin and clinician pages. A ``javascript:``,
``data:``, ``vbscript:`` or ``file:`` URL there runs script or opens local files when clicked,
so a source file cannot be trusted to name a harmless scheme: only absolute ``http(s)`` URLs
with a host are kept.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SAFE_SCHEMES = frozenset({"http", "https"})


def safe_http_url(raw: str) -> str | None:
    """``raw`` without surrounding whitespace if it is an absolute http(s) URL; else ``None``.

    Browsers drop tabs and newlines anywhere in a URL and control characters or spaces around
    it (``"java\\tscript:"`` and ``" JAVASCRIPT:"`` both run script), so a URL holding any
    whitespace or control character inside is refused outright rather than cleaned up.
    Relative URLs, ``//host`` and scheme-only URLs (``https:foo``) are refused too.
    """
    url = raw.strip(" \t\n\r\f\v\x00")
    if not url:
        return None
    if any(c.isspace() or not c.isprintable() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    if parts.scheme.lower() not in SAFE_SCHEMES or not parts.hostname:
        return None
    return url
