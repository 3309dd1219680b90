"""CaseOps: the lossless-capitals text transform and its per-token original-byte counts.

Source: 2026-04-27 record (PR #1855) ``lossless_caps.py`` transform ``lossless_caps_caseops_v1`` (= its
``encode_lossless_caps_v2``), from PR #1729; per-token byte sidecar from its ``prepare_caseops_data.py``.

The transform rewrites every maximal run of ASCII letters ``[A-Za-z]+`` (a "word") in lowercase and marks
its capitalization with private-use operator characters, so the tokenizer can share lowercase subwords:

- lowercase word: unchanged;
- ALLCAPS word of 2+ letters: ``ALLCAPS`` + lowercase word;
- otherwise ``TITLE`` before the word if its first letter is uppercase, and ``CAPNEXT`` before every later
  uppercase letter (``"Title"`` -> ``TITLE title``; ``"iPhone"`` -> ``i CAPNEXT phone``; ``"A"`` -> ``TITLE a``);
- a literal operator character in the input is escaped as ``ESC`` + the character.

Everything else (digits, punctuation, non-ASCII letters) is untouched, so the transform is a bijection
onto its image and ``decode(encode(s)) == s`` for every string.

val_bpb must count the ORIGINAL UTF-8 bytes. Each transformed character stands for: 0 bytes (an
unescaped operator or ESC), else the UTF-8 length of the character (an escaped operator stands for
itself, 3 bytes; a lowercased ASCII letter stands for 1 byte either way). Summing that over the surface
text of each SentencePiece piece gives the per-token byte sidecar (BOS counts 0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from golf.errors import GolfError

TITLE = "\ue001"
ALLCAPS = "\ue002"
CAPNEXT = "\ue003"
ESC = "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)
TRANSFORMS = ("identity", "caseops_v1")
"""Names accepted for ``data.text_transform`` / ``prepare --text-transform``."""

_ENCODE_UNIT = re.compile(r"[A-Za-z]+|[\ue001-\ue004]")
_DECODE_UNIT = re.compile(r"\ue004(.)|\ue002([a-z]+)|\ue001([a-z])|\ue003([a-z])", re.DOTALL)


class CaseOpsError(GolfError, ValueError):
    """A string is not a valid (canonical) CaseOps encoding, or an unknown transform was named."""


def _encode_unit(m: re.Match) -> str:
    s = m.group(0)
    if s in OPERATORS:
        return ESC + s
    if s.islower():
        return s
    if len(s) >= 2 and s.isupper():
        return ALLCAPS + s.lower()
    out = [TITLE + s[0].lower() if s[0].isupper() else s[0]]
    out += [CAPNEXT + c.lower() if c.isupper() else c for c in s[1:]]
    return "".join(out)


def encode(text: str) -> str:
    """Apply the CaseOps transform (rules in the module docstring) to ``text``."""
    return _ENCODE_UNIT.sub(_encode_unit, text)


def _decode_unit(m: re.Match) -> str:
    esc, allcaps, title, capnext = m.groups()
    if esc is not None:
        return esc
    if allcaps is not None:
        return allcaps.upper()
    return (title if title is not None else capnext).upper()


def decode(text: str) -> str:
    """Invert :func:`encode`.

    Raises:
        CaseOpsError: ``text`` is not exactly what :func:`encode` produces for some string (a dangling or
            misplaced operator); the check is ``encode(decode(text)) == text``.
    """
    out = _DECODE_UNIT.sub(_decode_unit, text)
    if encode(out) != text:
        raise CaseOpsError("text is not a canonical caseops_v1 encoding (misplaced or dangling operator)")
    return out


def piece_original_bytes(surfaces: Iterable[str]) -> list[int]:
    """Original UTF-8 bytes per piece, given the pieces' surface strings in order (their concatenation is
    the transformed text). An ``ESC`` at the end of one piece escapes the first character of the next.

    Raises:
        CaseOpsError: the last piece ends with a dangling ``ESC``.
    """
    counts: list[int] = []
    escaped = False
    for surface in surfaces:
        n = 0
        for ch in surface:
            if escaped:
                n += len(ch.encode("utf-8"))
                escaped = False
            elif ch in OPERATORS:
                escaped = ch == ESC
            else:
                n += len(ch.encode("utf-8"))
        counts.append(n)
    if escaped:
        raise CaseOpsError("dangling caseops escape at the end of the text")
    return counts


def apply_transform(name: str, text: str) -> str:
    """``text`` under the named transform (``identity`` or ``caseops_v1``).

    Raises:
        CaseOpsError: unknown transform name.
    """
    if name == "identity":
        return text
    if name == "caseops_v1":
        return encode(text)
    raise CaseOpsError(f"unknown text transform {name!r}; allowed: {', '.join(TRANSFORMS)}")


def token_original_bytes(sp, transformed: str) -> tuple[list[int], list[int]]:
    """Tokenize transformed text and count each token's original UTF-8 bytes.

    Args:
        sp: a ``sentencepiece.SentencePieceProcessor`` (the CaseOps tokenizer).
        transformed: ``encode(document)``.
    Returns:
        (ids, bytes): token ids (no BOS) and, per id, the original bytes its surface stands for.
    """
    proto = sp.encode_as_proto(transformed)
    pieces = list(proto.pieces)
    return [int(p.id) for p in pieces], piece_original_bytes(p.surface for p in pieces)
