"""The subject of a prompt, in its own words: "customer invoices", "login flow".

A template's step texts are filled in with it ("Design the database schema for customer
invoices"). It is read from the first sentence with a few English patterns (``<x>
microservice``, ``audit <x>``, ``... for <x>``), keeping a short noun phrase without verbs,
fillers and technology words. When a task is split, its title, without its leading verb
and fillers, is the subject of the subtasks.
"""

from __future__ import annotations

import re

from .templates import GENERIC

_SUBJECT_FALLBACK = "the requested change"
_SUBJECT_MAX_WORDS = 6
_SUBJECT_MAX_CHARS = 80


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WORD = r"[^\W_][\w.+#/'-]*"
_STOP_WORDS = _words(
    "with using in on that which who where so to from by via into and or but as at for of "
    "against about regarding across within backed written built including plus should must "
    "will"
)
_LEADING_FILLERS = _words(
    "a an the our my your their its this that these those new simple basic small full complete some"
)
_VERB_WORDS = _words(
    "build create implement add write make develop design fix refactor set up audit review "
    "secure harden assess pentest scan check test improve support expose scaffold connect "
    "wire integrate containerise containerize deploy document run"
)
_VERBS = "|".join([*sorted(_VERB_WORDS - {"set", "up"}), "set up"])
_FOR = re.compile(r"\b(?:for|of|managing|to manage)\s+(?P<rest>.+)", re.IGNORECASE)
_VERB_OBJECT = re.compile(rf"\b(?:{_VERBS})\s+(?P<rest>.+)", re.IGNORECASE)
_BEFORE_SERVICE = re.compile(
    rf"(?P<before>(?:{_WORD}\s+){{0,2}}{_WORD})\s+(?:micro-?\s?)?service\b", re.IGNORECASE
)
_TECH_NOISE = _words(
    "crud api rest react vue angular svelte ui frontend front-end dashboard page pages "
    "microservice service endpoint endpoints"
)
# Subject patterns scan the first sentence only, and only this much of it.
_SCAN_CHARS = 500


def _noun_phrase(text: str) -> str:
    """The first few words of ``text`` up to a stop word, without leading verbs and fillers
    and without technology words ("CRUD API", "React")."""
    words: list[str] = []
    for match in re.finditer(rf"{_WORD}|[^\w\s]", text):
        word = match.group(0).rstrip(".'-")
        lowered = word.lower()
        if not word or not word[0].isalnum() or lowered in _STOP_WORDS:
            if words:
                break
            continue
        if not words and (lowered in _LEADING_FILLERS or lowered in _VERB_WORDS):
            continue
        words.append(word)
        if len(words) == _SUBJECT_MAX_WORDS:
            break
    return " ".join(w for w in words if w.lower() not in _TECH_NOISE)


def subject_of_title(title: str) -> str:
    """A task title read as a subject: "Implement the payments logic" -> "payments logic"."""
    words = title.split()
    if words and words[0].lower() in _VERB_WORDS:
        words = words[1:]
    while words and words[0].lower() in _LEADING_FILLERS:
        words = words[1:]
    subject = " ".join(words) or " ".join(title.split()) or _SUBJECT_FALLBACK
    return clip(subject, _SUBJECT_MAX_CHARS)


def extract_subject(prompt: str, template: str = GENERIC, fallback: str | None = None) -> str:
    """The thing the prompt is about, in its own words ("customer invoices").

    A few patterns in order, depending on the template (``<x> microservice``, ``audit <x>``,
    ``... for <x>``); ``fallback`` (e.g. the parent task's title) or a neutral phrase when
    nothing matches. Only the first sentence of the prompt is read.
    """
    first = re.split(r"(?<=[.!?])\s+|\n", prompt.strip(), maxsplit=1)[0][:_SCAN_CHARS]
    candidates: list[str] = []
    if template == "microservice":
        match = _BEFORE_SERVICE.search(first)
        if match:
            candidates.append(_noun_phrase(match.group("before")))
    order = (_VERB_OBJECT, _FOR) if template in ("security", GENERIC) else (_FOR, _VERB_OBJECT)
    for pattern in order:
        match = pattern.search(first)
        if match:
            candidates.append(_noun_phrase(match.group("rest")))
    for candidate in [*candidates, " ".join((fallback or "").split())]:
        if candidate:
            return clip(candidate, _SUBJECT_MAX_CHARS)
    return _SUBJECT_FALLBACK


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
