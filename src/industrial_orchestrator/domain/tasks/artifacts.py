"""Artifacts: the files an agent hands back with a task result, and the rules they obey.

An agent is untrusted, so everything it names is checked before it touches the disk:

* The path is a plain relative POSIX path inside the task's workspace: no ``..``, no
  ``.``, no empty component, no leading ``/``, no backslash, no drive prefix (``C:``),
  no control character, no lone surrogate. Nothing is normalised: a path that would
  need normalising is refused, so the path stored is the path written.
* Lengths are bounded in characters (``MAX_PATH_CHARS``, ``MAX_COMPONENT_CHARS``) and a
  component also in UTF-8 bytes, because that is what the filesystem counts (NAME_MAX).
* Sizes and counts are bounded per report (``ArtifactLimits``); a path appears once.

What this module cannot see is the disk: a symlink planted in the workspace is caught
by ``workspaces.files``, which writes without following links.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..errors import ArtifactPathRefused, InvalidInput, PayloadTooLarge

MAX_PATH_CHARS = 1024
MAX_COMPONENT_CHARS = 255
# Most filesystems limit a name to 255 bytes; a 255-character name in UTF-8 can be longer.
MAX_COMPONENT_BYTES = 255
MAX_MIME_TYPE_CHARS = 127

DEFAULT_MIME_TYPE = "application/octet-stream"
ENCODINGS = ("utf-8", "base64")

# How much of a refused path goes back in an error, so a megabyte path is not echoed.
_SHOWN_CHARS = 120

_DRIVE = re.compile(r"^[A-Za-z]:")
# RFC 6838 restricted names, optionally followed by ``; name=value`` parameters.
_MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
_MIME_TYPE = re.compile(
    rf"{_MIME_NAME}/{_MIME_NAME}(?:\s*;\s*{_MIME_NAME}=(?:{_MIME_NAME}|\"[^\"\\\x00-\x1f\x7f]*\"))*"
)


@dataclass(frozen=True, slots=True)
class Artifact:
    """One validated file of a task result: where it goes, what it holds, how to verify it."""

    path: str
    content: bytes = field(repr=False)
    mime_type: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ArtifactLimits:
    """Bounds on one result report: bytes per artifact and number of artifacts."""

    max_bytes: int
    max_count: int


def shown_path(path: str) -> str:
    """``path`` made safe to echo: truncated, control characters and surrogates escaped."""
    head = path[:_SHOWN_CHARS]
    safe = "".join(
        ch if ch.isprintable() and not _is_surrogate(ch) else ch.encode("unicode_escape").decode()
        for ch in head
    )
    return safe + ("…" if len(path) > _SHOWN_CHARS else "")


def validate_artifact_path(path: str) -> PurePosixPath:
    """The artifact path as a ``PurePosixPath``, or ``ArtifactPathRefused`` saying why not."""

    def refuse(reason: str) -> ArtifactPathRefused:
        return ArtifactPathRefused(
            f"artifact path {shown_path(path)!r} is refused: {reason}",
            {"field": "artifacts.path", "path": shown_path(path)},
        )

    if not path or path.isspace():
        raise refuse("it is empty")
    if len(path) > MAX_PATH_CHARS:
        raise refuse(f"it is {len(path)} characters long; the limit is {MAX_PATH_CHARS}")
    for position, ch in enumerate(path):
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise refuse(f"it contains the control character {ch!r} at position {position}")
        if _is_surrogate(ch):
            raise refuse(f"it contains the lone surrogate {ch!r} at position {position}")
    if "\\" in path:
        raise refuse("it contains a backslash; use '/' to separate directories")
    if path.startswith("/"):
        raise refuse("it is absolute; it must be relative to the workspace")
    if _DRIVE.match(path):
        raise refuse("it starts with a drive prefix; it must be relative to the workspace")
    for component in path.split("/"):
        if component == "":
            raise refuse("it has an empty component ('//' or a trailing '/')")
        if component in (".", ".."):
            raise refuse(f"it has a {component!r} component")
        if len(component) > MAX_COMPONENT_CHARS:
            raise refuse(
                f"a component is {len(component)} characters long;"
                f" the limit is {MAX_COMPONENT_CHARS}"
            )
        size = len(component.encode("utf-8"))
        if size > MAX_COMPONENT_BYTES:
            raise refuse(
                f"a component is {size} bytes long in UTF-8; the limit is {MAX_COMPONENT_BYTES}"
            )
    return PurePosixPath(path)


def new_artifact(path: str, content: bytes, mime_type: str | None) -> Artifact:
    """A validated artifact; the MIME type is guessed from the path when not given."""
    validate_artifact_path(path)
    return Artifact(
        path=path,
        content=content,
        mime_type=_mime_type(path, mime_type),
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
    )


def check_artifacts(artifacts: Sequence[Artifact], limits: ArtifactLimits) -> None:
    """Refuse a report with too many artifacts, one too large, or a path given twice."""
    if len(artifacts) > limits.max_count:
        raise PayloadTooLarge(
            f"{len(artifacts)} artifacts were sent; the limit is {limits.max_count}",
            {"field": "artifacts", "count": len(artifacts), "limit": limits.max_count},
        )
    seen: set[str] = set()
    for artifact in artifacts:
        if artifact.size_bytes > limits.max_bytes:
            raise PayloadTooLarge(
                f"artifact {shown_path(artifact.path)!r} is {artifact.size_bytes} bytes;"
                f" the limit is {limits.max_bytes}",
                {
                    "field": "artifacts.content",
                    "path": shown_path(artifact.path),
                    "size_bytes": artifact.size_bytes,
                    "limit": limits.max_bytes,
                },
            )
        if artifact.path in seen:
            raise InvalidInput(
                f"artifact path {shown_path(artifact.path)!r} is given more than once",
                {"field": "artifacts.path", "path": shown_path(artifact.path)},
            )
        seen.add(artifact.path)


def decode_content(content: str, encoding: str) -> bytes:
    """The bytes of an artifact sent as text (``utf-8``) or as strict ``base64``."""
    if encoding == "utf-8":
        try:
            return content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(
                "artifact content is not valid UTF-8 text (it holds a lone surrogate)",
                {"field": "artifacts.content"},
            ) from exc
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII characters in the text
            raise InvalidInput(
                "artifact content is not valid base64", {"field": "artifacts.content"}
            ) from exc
    raise InvalidInput(
        f"artifact encoding {encoding[:40]!r} is not supported; use one of {', '.join(ENCODINGS)}",
        {"field": "artifacts.encoding", "allowed": list(ENCODINGS)},
    )


def _mime_type(path: str, given: str | None) -> str:
    if given is None:
        return mimetypes.guess_type(path)[0] or DEFAULT_MIME_TYPE
    mime_type = given.strip()
    if len(mime_type) > MAX_MIME_TYPE_CHARS:
        raise InvalidInput(
            f"artifact MIME type is {len(mime_type)} characters long;"
            f" the limit is {MAX_MIME_TYPE_CHARS}",
            {"field": "artifacts.mime_type"},
        )
    if not _MIME_TYPE.fullmatch(mime_type):
        raise InvalidInput(
            f"artifact MIME type {mime_type!r} does not look like 'type/subtype'",
            {"field": "artifacts.mime_type"},
        )
    return mime_type


def _is_surrogate(ch: str) -> bool:
    return 0xD800 <= ord(ch) <= 0xDFFF
