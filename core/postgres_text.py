"""Text Postgres can store: no NUL, no lone surrogate.

Postgres `text` and `jsonb` cannot hold U+0000, and a Python string holding a lone UTF-16
surrogate (JSON's "\\ud800" decodes to one) has no UTF-8 form, so asyncpg cannot send it;
either fails the whole statement. The admin API refuses such input (400 naming the field);
the meter, which must never lose a billed call, stores U+FFFD in their place.
"""

from __future__ import annotations

import re

__all__ = ["REPLACEMENT", "storable_text", "unstorable_character"]

REPLACEMENT = "\ufffd"
# A surrogate code point in a str is always a lone one: a valid pair decodes to one character.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_character(value: str) -> str | None:
    """What makes `value` unstorable (its first such character, described), or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    char = found.group()
    return "NUL (U+0000)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"


def storable_text(value: str) -> str:
    """`value` with each NUL and lone surrogate replaced by U+FFFD (the same object when clean)."""
    if value.isascii():  # the common case: one C-speed scan, no regex
        return value.replace("\x00", REPLACEMENT) if "\x00" in value else value
    return _UNSTORABLE.sub(REPLACEMENT, value) if _UNSTORABLE.search(value) else value
