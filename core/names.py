"""Characters a file name may hold: one Unicode form, nothing invisible that could disguise it.

A name is kept in Unicode normal form C, so "é" typed as one code point (NFC, most systems) or as
"e" + a combining accent (NFD, macOS) is the same name, not two files that look alike. Characters
that change how a name is *shown* rather than what it says are refused: control characters,
bidirectional overrides and isolates (U+202E turns "invoice_fdp.exe" into "invoice_exe.pdf" on
screen), invisible format characters (zero-width joiners, soft hyphens, the BOM) and line or
paragraph separators (U+2028/U+2029 break a name across lines in an operator's view). That is
every code point of Unicode categories Cc, Cf, Zl and Zp, and lone surrogates (Cs).
"""

from __future__ import annotations

import unicodedata

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Embeddings, overrides, isolates, and the marks (LRM, RLM, ALM) that steer the bidi algorithm.
_BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])


def normalize_name(name: str) -> str:
    """`name` in NFC; ValueError naming the first character that must not be in a file name."""
    name = unicodedata.normalize("NFC", name)
    for char in name:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            raise ValueError(f"file name must not contain {describe(char)}: {why(char)}")
    return name


def describe(char: str) -> str:
    label = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"{code} ({label})" if label else code


def why(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cc":
        return "control characters and NUL are not allowed"
    if category in ("Zl", "Zp"):
        return "line and paragraph separators would break the name across lines"
    if ord(char) in _BIDI_CONTROLS:
        return "bidirectional controls can make a name read as another"
    if category == "Cs":
        return "it is not a valid character"
    return "invisible formatting characters can make a name look like another"
