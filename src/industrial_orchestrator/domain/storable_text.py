"""Which text the databases can keep and give back: one rule for both engines.

PostgreSQL refuses a NUL (U+0000) in text and in jsonb; SQLite keeps a lone surrogate
(a code point in U+D800-U+DFFF without its pair, which JSON's ``\\ud800`` escape can
carry into Python) inside JSON text, and then nothing can serve the row, since it cannot
be encoded as UTF-8. So a string holding either is not storable: at the API edge it is
refused (422) before anything is written; where it comes from an agent or a tool, with
no client to tell, it is made storable by replacing each bad code point with U+FFFD.
In Python a surrogate pair decoded from JSON is already one code point above U+FFFF, so
any code point left in the surrogate range is a lone one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

Path = tuple[str | int, ...]


def first_unstorable(text: str) -> str | None:
    """The first code point of ``text`` that cannot be stored, or None."""
    found = _UNSTORABLE.search(text)
    return found.group() if found else None


def is_storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def storable(text: str) -> str:
    """``text`` with every NUL and lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def describe(char: str) -> str:
    """How to name a bad code point to a person, without printing it."""
    if char == "\x00":
        return "a NUL character (U+0000)"
    return f"a lone surrogate (U+{ord(char):04X})"


def escaped(text: str) -> str:
    """``text`` with its bad code points written as ``\\uXXXX``: safe to show and to
    encode, and still telling which key it was."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


@dataclass(frozen=True, slots=True)
class Unstorable:
    """Where a JSON-like value holds text that cannot be stored."""

    path: Path
    """Keys and list indexes from the top; a bad key is named (escaped) by itself."""
    char: str
    in_key: bool

    @property
    def message(self) -> str:
        where = "the key" if self.in_key else "the text"
        return f"{where} contains {describe(self.char)}, which cannot be stored"


def find_unstorable(value: Any, path: Path = ()) -> Unstorable | None:
    """The first string (dict key or value, at any depth) that cannot be stored."""
    # Iterative, so a deeply nested body cannot exhaust the interpreter's stack.
    pending: list[tuple[Any, Path]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            char = first_unstorable(item)
            if char is not None:
                return Unstorable(where, char, in_key=False)
        elif isinstance(item, Mapping):
            children: list[tuple[Any, Path]] = []
            for key, child in item.items():
                if isinstance(key, str):
                    char = first_unstorable(key)
                    if char is not None:
                        return Unstorable((*where, escaped(key)), char, in_key=True)
                children.append((child, (*where, key)))
            pending.extend(reversed(children))
        elif isinstance(item, list | tuple):
            pending.extend(reversed([(child, (*where, i)) for i, child in enumerate(item)]))
    return None


def storable_json(value: Any) -> Any:
    """``value`` (JSON-like) with every string, keys included, made storable. Keys that
    become equal keep the last one's value. Returns ``value`` itself when nothing
    changes, so the common case allocates nothing."""
    if find_unstorable(value) is None:
        return value
    return _replaced(value)


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, Mapping):
        return {
            (storable(key) if isinstance(key, str) else key): _replaced(child)
            for key, child in value.items()
        }
    if isinstance(value, list | tuple):
        return [_replaced(child) for child in value]
    return value
