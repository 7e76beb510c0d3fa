"""Artifact paths, limits, content decoding and MIME types, case by case."""

from __future__ import annotations

import base64
import hashlib
from pathlib import PurePosixPath

import pytest

from industrial_orchestrator.domain.errors import (
    ArtifactPathRefused,
    InvalidInput,
    PayloadTooLarge,
)
from industrial_orchestrator.domain.tasks.artifacts import (
    MAX_COMPONENT_CHARS,
    MAX_PATH_CHARS,
    Artifact,
    ArtifactLimits,
    check_artifacts,
    decode_content,
    new_artifact,
    validate_artifact_path,
)

REFUSED = [
    ("", "empty"),
    ("   ", "empty"),
    ("a" * (MAX_PATH_CHARS + 1), f"the limit is {MAX_PATH_CHARS}"),
    ("src/\x00evil.py", "control character '\\x00' at position 4"),
    ("a\nb", "control character"),
    ("tab\there", "control character"),
    ("del\x7f", "control character '\\x7f'"),
    ("a\x1fb", "control character"),
    ("lone\ud800", "lone surrogate"),
    ("src\\app.py", "backslash"),
    ("..\\..\\etc\\passwd", "backslash"),
    ("/etc/passwd", "absolute"),
    ("//server/share", "absolute"),
    ("C:", "drive prefix"),
    ("C:/Windows/system32", "drive prefix"),
    ("c:evil.txt", "drive prefix"),
    ("a:b/c", "drive prefix"),
    ("a//b", "empty component"),
    ("src/", "empty component"),
    (".", "'.' component"),
    ("./a", "'.' component"),
    ("a/./b", "'.' component"),
    ("..", "'..' component"),
    ("../outside", "'..' component"),
    ("a/../../b", "'..' component"),
    ("a/..", "'..' component"),
    ("d/" + "x" * (MAX_COMPONENT_CHARS + 1), f"the limit is {MAX_COMPONENT_CHARS}"),
    ("é" * 200, "bytes long in UTF-8"),
]


@pytest.mark.parametrize(("path", "reason"), REFUSED)
def test_refused_paths_say_what_is_wrong(path: str, reason: str) -> None:
    with pytest.raises(ArtifactPathRefused) as caught:
        validate_artifact_path(path)
    assert reason in caught.value.message
    assert caught.value.code == "artifact_path_refused"
    assert caught.value.details["field"] == "artifacts.path"
    shown = caught.value.details["path"]
    assert len(shown) <= 121
    assert all(ch.isprintable() for ch in shown)


def test_refusal_is_invalid_input() -> None:
    assert issubclass(ArtifactPathRefused, InvalidInput)


def test_refused_long_path_is_truncated_in_the_error() -> None:
    with pytest.raises(ArtifactPathRefused) as caught:
        validate_artifact_path("a" * 10_000)
    assert caught.value.details["path"] == "a" * 120 + "…"
    assert len(caught.value.message) < 300


@pytest.mark.parametrize(
    "path",
    [
        "src/app/main.py",
        "README",
        "a b/c-d_e.txt",
        "données/résumé.md",
        "文档/说明.txt",
        ".gitignore",
        "..hidden/...",
        "~",
        "ab:c",
        "src/a:b",
        "x" * MAX_COMPONENT_CHARS,
        "/".join(["ab"] * (MAX_PATH_CHARS // 3)),
    ],
)
def test_normal_paths_are_accepted_unchanged(path: str) -> None:
    validated = validate_artifact_path(path)
    assert validated == PurePosixPath(path)
    assert str(validated) == path


def test_new_artifact_hashes_and_measures_content() -> None:
    artifact = new_artifact("src/auth_router.py", b"print('hi')\n", "text/x-python")
    assert artifact == Artifact(
        path="src/auth_router.py",
        content=b"print('hi')\n",
        mime_type="text/x-python",
        sha256=hashlib.sha256(b"print('hi')\n").hexdigest(),
        size_bytes=12,
    )
    assert "print" not in repr(artifact)


def test_new_artifact_validates_the_path() -> None:
    with pytest.raises(ArtifactPathRefused):
        new_artifact("../x.py", b"", None)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("README.md", "text/markdown"),
        ("src/main.py", "text/x-python"),
        ("img/logo.png", "image/png"),
        ("data.json", "application/json"),
        ("README", "application/octet-stream"),
        ("blob.unknownext", "application/octet-stream"),
    ],
)
def test_mime_type_is_guessed_from_the_path(path: str, expected: str) -> None:
    assert new_artifact(path, b"", None).mime_type == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("  text/plain  ", "text/plain"),
        ("application/vnd.api+json", "application/vnd.api+json"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
    ],
)
def test_given_mime_type_is_stripped_and_kept(given: str, expected: str) -> None:
    assert new_artifact("a.bin", b"", given).mime_type == expected


@pytest.mark.parametrize(
    "given",
    ["", "text", "text/", "/plain", "text/plain/x", "text plain", "text/pl\nain", "a/" + "b" * 126],
)
def test_malformed_mime_type_is_refused(given: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        new_artifact("a.bin", b"", given)
    assert caught.value.details["field"] == "artifacts.mime_type"
    assert not isinstance(caught.value, ArtifactPathRefused)


LIMITS = ArtifactLimits(max_bytes=10, max_count=2)


def test_within_limits_passes() -> None:
    check_artifacts([new_artifact("a", b"x" * 10, None), new_artifact("b", b"", None)], LIMITS)
    check_artifacts([], LIMITS)


def test_too_many_artifacts_names_count_and_limit() -> None:
    artifacts = [new_artifact(name, b"", None) for name in ("a", "b", "c")]
    with pytest.raises(PayloadTooLarge) as caught:
        check_artifacts(artifacts, LIMITS)
    assert "3 artifacts" in caught.value.message
    assert "limit is 2" in caught.value.message
    assert caught.value.details == {"field": "artifacts", "count": 3, "limit": 2}


def test_oversized_artifact_names_path_size_and_limit() -> None:
    artifacts = [new_artifact("ok.txt", b"", None), new_artifact("big.bin", b"x" * 11, None)]
    with pytest.raises(PayloadTooLarge) as caught:
        check_artifacts(artifacts, LIMITS)
    assert "'big.bin' is 11 bytes" in caught.value.message
    assert "limit is 10" in caught.value.message
    assert caught.value.details["path"] == "big.bin"
    assert caught.value.details["size_bytes"] == 11


def test_duplicate_path_is_refused() -> None:
    artifacts = [new_artifact("src/a.py", b"1", None), new_artifact("src/a.py", b"2", None)]
    with pytest.raises(InvalidInput) as caught:
        check_artifacts(artifacts, LIMITS)
    assert "'src/a.py' is given more than once" in caught.value.message
    assert caught.value.details == {"field": "artifacts.path", "path": "src/a.py"}


def test_utf8_content_is_encoded() -> None:
    assert decode_content("héllo", "utf-8") == "héllo".encode()


def test_utf8_content_with_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        decode_content("bad\udc80", "utf-8")


def test_base64_content_is_decoded() -> None:
    raw = bytes(range(256))
    assert decode_content(base64.b64encode(raw).decode(), "base64") == raw
    assert decode_content("", "base64") == b""


@pytest.mark.parametrize("content", ["not base64!", "YWJj$", "YWJjZA=", "YW Jj", "é"])
def test_invalid_base64_is_refused(content: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_content(content, "base64")
    assert caught.value.message == "artifact content is not valid base64"


@pytest.mark.parametrize("encoding", ["latin-1", "UTF8", "hex", ""])
def test_unknown_encoding_is_refused(encoding: str) -> None:
    with pytest.raises(InvalidInput, match="is not supported"):
        decode_content("abc", encoding)
