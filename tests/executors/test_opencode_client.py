"""What the OpenCode client reads is the agent's text: a lone surrogate or a NUL that
OpenCode's JSON carries in a permission request or a session's diff comes out as U+FFFD,
so the task's diff artifact can be encoded and the requests served."""

from __future__ import annotations

import json

import httpx

from industrial_orchestrator.executors.opencode.client import OpenCodeClient

PATCH = "--- a/bad\ud800.py\n+++ b/bad\ud800.py\n+nul \x00\n"


def _opencode(request: httpx.Request) -> httpx.Response:
    answers = {
        "/session/ses_1/diff": [{"file": "bad\ud800.py", "patch": PATCH}],
        "/permission": [{"id": "per_1", "patterns": ["rm bad\udcff.py"], "metadata": {}}],
    }
    if request.url.path not in answers:
        return httpx.Response(404, json={"name": "NotFound"})
    # Escaped as OpenCode's JSON would carry them; httpx's own encoder refuses a surrogate.
    content = json.dumps(answers[request.url.path]).encode()
    return httpx.Response(200, content=content, headers={"content-type": "application/json"})


async def test_a_diff_and_permission_requests_come_out_storable() -> None:
    async with OpenCodeClient(
        "http://opencode.test", "pw", transport=httpx.MockTransport(_opencode)
    ) as client:
        [changed] = await client.diff("ses_1", "/tmp/tree")
        [request] = await client.permissions("/tmp/tree")
    assert changed["file"] == "bad\ufffd.py"
    # As the executor turns it into the task's diff artifact.
    assert changed["patch"].encode() == (
        "--- a/bad\ufffd.py\n+++ b/bad\ufffd.py\n+nul \ufffd\n".encode()
    )
    assert request["patterns"] == ["rm bad\ufffd.py"]
