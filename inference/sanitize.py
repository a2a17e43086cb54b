"""Untrusted text in a prompt must not become the model's control tokens.

Guideline passages, their titles and section names, and the clinician's question are data. If
one of them contains ``<|im_end|>\\n<|im_start|>system`` (ChatML) or ``</s>`` / ``\\n### User:``
(Meditron's completion-style template), a tokenizer turns that text into the very tokens the
prompt template uses to end the user's turn and open a new one, and the data becomes
instructions. Every untrusted string is therefore passed through :func:`untrusted_neutralise`
before it is put into a template.

The scheme: at every position where a control string begins, a WORD JOINER (U+2060, invisible,
zero-width) is inserted after its first character, so ``</s>`` becomes ``<\\u2060/s>``, ``###``
becomes ``#\\u2060##`` and ``####`` ``#\\u2060#\\u2060##``. Why this cannot be re-assembled:

- every occurrence is broken, overlapping ones included (``####`` has two), in one pass over the
  whole string, so no control string is left in it. Suppose one were: it spans original
  characters with no joiner between them, yet it is also an occurrence in the original text,
  which got a joiner after its first character. So none is left (control strings do not contain
  the joiner, and have two characters or more);
- characters are only inserted, never removed or replaced, so no new adjacency of original
  characters is created for a control string to form from;
- the result contains no control string, so a second pass finds nothing: it is idempotent, and
  text that is neutralised twice (``render`` inside ``build_prompt``) is unchanged;
- the joiner is not in any control string and is not removed by the tokenizers' normalisers
  (NFC for Qwen2.5, none for Llama-2's SentencePiece), so the tokenizer sees the broken form.

Role lines (``User:``/``Assistant:`` at the start of a line, which a base model reads as a turn
and the Meditron backends use as stop strings) get the joiner before their colon.

Removing every U+2060 gives back the original text: the visible text, and so the words a model
and a reader see, are unchanged. Nothing here imports a model library.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

WORD_JOINER = "\u2060"

# Characters after which a new line begins (those of ``str.splitlines``): a role marker after a
# lone "\r" or a U+2028 starts a line for a model as much as one after "\n" does.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# Markdown decoration that may come before a role name on a line ("> **User:**", "### User:").
_ROLE_LEAD = rf"[ \t#>*_\-{WORD_JOINER}]*"


@dataclass(frozen=True)
class ControlMarkup:
    """What in untrusted text could act as a prompt template's control markup.

    ``strings`` are broken wherever they occur: special tokens, or a prefix shared by a whole
    family of them (``<|`` begins every ChatML/Qwen control token, so breaking it breaks those
    a tokenizer may add later too), and turn markers such as ``###``. ``roles`` are role names
    neutralised at the start of a line when followed by a colon.
    """

    strings: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()

    def extended(self, strings: Iterable[str]) -> ControlMarkup:
        """This markup plus ``strings`` (e.g. a tokenizer's own special tokens)."""
        extra = tuple(s for s in strings if s not in self.strings)
        return self if not extra else ControlMarkup(self.strings + extra, self.roles)


@functools.lru_cache(maxsize=32)
def _strings_pattern(strings: tuple[str, ...]) -> re.Pattern[str] | None:
    # A one-character control string cannot be broken by an insertion; none of the supported
    # tokenizers has one, and breaking every occurrence of a common character would not help.
    usable = sorted({s for s in strings if len(s) >= 2 and WORD_JOINER not in s}, key=len)
    if not usable:
        return None
    # The lookahead matches at every start position, overlapping occurrences included; the one
    # consumed character is the first of the control string, re-emitted with the joiner.
    alternatives = "|".join(re.escape(s) for s in reversed(usable))
    return re.compile(rf"(?=(?:{alternatives}))(.)", re.DOTALL)


@functools.lru_cache(maxsize=32)
def _roles_pattern(roles: tuple[str, ...]) -> re.Pattern[str] | None:
    if not roles:
        return None
    names = "|".join(re.escape(role) for role in roles)
    return re.compile(
        rf"(?<![^{_LINE_BREAKS}])({_ROLE_LEAD}(?:{names})[ \t*_]*)(?=:)", re.IGNORECASE
    )


def untrusted_neutralise(text: str, *, markup: ControlMarkup) -> str:
    """``text`` with every control string in ``markup`` broken by an invisible joiner.

    Idempotent; ``result.replace(WORD_JOINER, "") == text.replace(WORD_JOINER, "")``.
    """
    if roles := _roles_pattern(markup.roles):
        text = roles.sub(lambda m: m.group(1) + WORD_JOINER, text)
    if strings := _strings_pattern(markup.strings):
        text = strings.sub(lambda m: m.group(1) + WORD_JOINER, text)
    return text


def tokenizer_control_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The special tokens of a Hugging Face tokenizer, as text.

    ``all_special_tokens`` alone misses most of them (Qwen2.5's lists only ``<|endoftext|>`` and
    ``<|im_end|>``), so the added tokens marked special are read as well. Duck-typed, so this
    module needs no model library.
    """
    found: dict[str, None] = dict.fromkeys(
        str(token) for token in getattr(tokenizer, "all_special_tokens", ()) or ()
    )
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token in added.values():
        if getattr(token, "special", False):
            found.setdefault(str(getattr(token, "content", token)))
    return tuple(token for token in found if token)


def backend_control_tokens(backend: object) -> tuple[str, ...]:
    """The special tokens a backend's tokenizer knows, or ``()`` when it cannot tell.

    Backends that hold their tokenizer (transformers) offer ``control_tokens()``; a vLLM server
    does not publish its list, so the profile's static list is what protects its prompts.
    """
    read = getattr(backend, "control_tokens", None)
    return tuple(read()) if callable(read) else ()
