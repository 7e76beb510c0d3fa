"""Which template a prompt asks for: keyword scores, and the choice made from them.

Every template but ``generic`` is scored by the keywords it lists (``templates``); the best
is chosen when it scores above ``CHOOSE_THRESHOLD``, otherwise the generic plan is. A
template named explicitly wins, whatever it scores.
"""

from __future__ import annotations

import re

from ..errors import InvalidInput
from .plans import TemplateChoice, TemplateScore
from .templates import GENERIC, TEMPLATE_NAMES, TEMPLATES

# A template must score above this to be chosen over the generic plan.
CHOOSE_THRESHOLD = 0.35


def _keyword_pattern(phrase: str) -> re.Pattern[str]:
    # Word boundaries that also work for phrases ending in punctuation ("next.js");
    # spaces match any run of whitespace or hyphens; an optional plural "s"/"es".
    words = [re.escape(word) for word in phrase.split()]
    return re.compile(r"(?<!\w)" + r"[\s-]+".join(words) + r"(?:e?s)?(?!\w)", re.IGNORECASE)


_KEYWORD_PATTERNS: dict[str, tuple[tuple[str, float, re.Pattern[str]], ...]] = {
    name: tuple((phrase, w, _keyword_pattern(phrase)) for phrase, w in t.keywords.items())
    for name, t in TEMPLATES.items()
}


def score_templates(prompt: str) -> list[TemplateScore]:
    """Every template but ``generic`` scored against ``prompt``, best first.

    Each matched keyword is independent evidence: score = 1 - prod(1 - weight), so it
    lies in [0, 1). Ties keep the order of ``TEMPLATES``.
    """
    scores: list[TemplateScore] = []
    for name, patterns in _KEYWORD_PATTERNS.items():
        if name == GENERIC:
            continue
        matched = tuple(phrase for phrase, _, pattern in patterns if pattern.search(prompt))
        missing = 1.0
        for phrase, weight, _ in patterns:
            if phrase in matched:
                missing *= 1.0 - weight
        scores.append(TemplateScore(name, round(1.0 - missing, 4), matched))
    return sorted(scores, key=lambda s: -s.score)


def _known_template(name: str) -> str:
    normalised = name.strip().lower()
    if normalised not in TEMPLATES:
        raise InvalidInput(
            f"unknown template {name!r}; known templates: {', '.join(TEMPLATE_NAMES)}",
            {"field": "template", "value": name, "known": list(TEMPLATE_NAMES)},
        )
    return normalised


def choose_template(prompt: str, explicit: str | None = None) -> TemplateChoice:
    """The template for ``prompt``: ``explicit`` if given, else the best above the threshold.

    Falls back to ``generic`` when no template scores above ``CHOOSE_THRESHOLD``. Raises
    ``InvalidInput`` listing the known names for an unknown explicit template.
    """
    scores = score_templates(prompt)
    if explicit is not None:
        name = _known_template(explicit)
        for score in scores:
            if score.template == name:
                return TemplateChoice(name, score.score, score.matched, explicit=True)
        return TemplateChoice(name, 0.0, (), explicit=True)
    best = scores[0]
    if best.score > CHOOSE_THRESHOLD:
        return TemplateChoice(best.template, best.score, best.matched, explicit=False)
    return TemplateChoice(GENERIC, 0.0, (), explicit=False)
