"""What a turn's assistant messages add up to: the tokens (every kind: input, output,
reasoning, cache) and cost, the last answer's text, and the error an answer ended with.
The loop guard counts a step's tokens the same way."""

from __future__ import annotations

from typing import Any


def usage(messages: list[dict[str, Any]]) -> tuple[int, float, str | None, str | None]:
    """Tokens, cost, last answer and error of the assistant messages of a session."""
    tokens = 0
    cost = 0.0
    summary: str | None = None
    error: str | None = None
    for message in messages:
        info = message.get("info") or {}
        if info.get("role") != "assistant":
            continue
        tokens += token_total(info.get("tokens") or {})
        cost += float(info.get("cost") or 0.0)
        if isinstance(info.get("error"), dict):
            error = error_text(info["error"])
        texts = [
            str(p.get("text") or "")
            for p in message.get("parts") or []
            if isinstance(p, dict) and p.get("type") == "text"
        ]
        if any(t.strip() for t in texts):
            summary = "\n".join(t for t in texts if t.strip())
    return tokens, cost, summary, error


def token_total(used: dict[str, Any]) -> int:
    """Every token of a message or step: input, output, reasoning and cache."""
    cache = used.get("cache") or {}
    return int(
        (used.get("input") or 0)
        + (used.get("output") or 0)
        + (used.get("reasoning") or 0)
        + (cache.get("read") or 0)
        + (cache.get("write") or 0)
    )


def error_text(error: dict[str, Any]) -> str:
    """An OpenCode error (a message's or a session's) as ``name: message``."""
    name = str(error.get("name") or "error")
    data = error.get("data") or {}
    message = data.get("message") if isinstance(data, dict) else None
    return f"{name}: {message}" if message else name
