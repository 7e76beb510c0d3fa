"""What the scripted model answers to one chat request, decided from its messages alone.

The script is the last user message that has directives (``model_script``). Its file and
shell directives become OpenCode tool calls, one per model turn and in order, paths made
absolute with the working directory of OpenCode's system prompt; which are done is counted
from the tool results after that message. Once every result is back the model answers
``Done: wrote …, edited …``. OpenCode's own title requests get a short title and leave the
directives alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..domain.agents.plans import PLAN_REQUEST_OPENING
from .model_script import Action, EditFile, RunCommand, Script, WriteFile, parse_script
from .openai_wire import ToolCall, chat_messages, system_text, text_of, token_usage

# OpenCode's tools and the argument names of the 1.18 series (docs/opencode-notes.md).
WRITE_TOOL = "write"
EDIT_TOOL = "edit"
BASH_TOOL = "bash"

NO_DIRECTIVE_ANSWER = "Scripted model: no directives, nothing to do."
TITLE = "Scripted session"

_WORKING_DIRECTORY = re.compile(r"Working directory:[ \t]*(\S[^\n]*?)[ \t]*$", re.MULTILINE)
_TITLE_REQUEST = re.compile(r"title generator", re.IGNORECASE)


def is_title_request(body: Mapping[str, Any]) -> bool:
    """OpenCode asks the small model for a session title with a system prompt of its own."""
    return bool(_TITLE_REQUEST.search(system_text(chat_messages(body))))


def working_directory(body: Mapping[str, Any]) -> str | None:
    """The directory OpenCode tells the model it works in (its system prompt's ``<env>``)."""
    match = _WORKING_DIRECTORY.search(system_text(chat_messages(body)))
    return match.group(1) if match else None


def _script_in(messages: Sequence[Mapping[str, Any]]) -> tuple[Script, int]:
    """The script of the last user message that has directives, and that message's index."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") != "user":
            continue
        script = parse_script(text_of(messages[index].get("content")))
        if not script.empty:
            return script, index
    return Script(), -1


def _absolute(path: str, directory: str | None) -> str:
    if path.startswith("/") or directory is None:
        return path
    return f"{directory.rstrip('/')}/{path}"


def tool_call_for(action: Action, directory: str | None) -> tuple[str, dict[str, Any]]:
    """The OpenCode tool and arguments that carry out ``action``."""
    if isinstance(action, WriteFile):
        path = _absolute(action.path, directory)
        return WRITE_TOOL, {"filePath": path, "content": action.content}
    if isinstance(action, EditFile):
        return EDIT_TOOL, {
            "filePath": _absolute(action.path, directory),
            "oldString": action.old,
            "newString": action.new,
        }
    return BASH_TOOL, {"command": action.command}


@dataclass(frozen=True)
class Reply:
    """What the model answers to one request."""

    kind: Literal["text", "tool", "fail"]
    text: str = ""
    tool: str = ""
    arguments: str = ""  # the tool call's arguments, as JSON text
    call_id: str = ""
    status: int = 200
    retry_after: float | None = None
    slow: float = 0.0
    tokens: tuple[int, int] | None = None
    directives: tuple[str, ...] = ()
    title: bool = False

    @property
    def action(self) -> str:
        return f"tool:{self.tool}" if self.kind == "tool" else self.kind

    @property
    def tool_call(self) -> ToolCall | None:
        return ToolCall(self.call_id, self.tool, self.arguments) if self.kind == "tool" else None

    @property
    def completion_text(self) -> str:
        return self.tool + self.arguments if self.kind == "tool" else self.text


def plan_reply(body: Mapping[str, Any]) -> Reply:
    """Decide the answer to a chat request from its messages alone."""
    if is_title_request(body):
        return Reply(kind="text", text=TITLE, title=True)
    messages = chat_messages(body)
    script, at = _script_in(messages)
    if script.empty:
        return Reply(kind="text", text=NO_DIRECTIVE_ANSWER)
    base = Reply(kind="text", slow=script.slow, tokens=script.tokens, directives=script.directives)
    if script.fail is not None:
        return replace(base, kind="fail", status=script.fail, retry_after=script.retry_after)
    if script.problems:
        return replace(base, text="Scripted model: cannot read " + "; ".join(script.problems))
    if script.plan is not None and PLAN_REQUEST_OPENING in text_of(messages[at].get("content")):
        return replace(base, text=script.plan)  # asked as the architect: the plan, verbatim
    done = sum(1 for message in messages[at + 1 :] if message.get("role") == "tool")
    action: Action | None = None
    if done < len(script.actions):
        action = script.actions[done]
    elif script.loop is not None and script.loop.applies_to(str(body.get("model") or "")):
        action = RunCommand(script.loop.command)
    if action is not None:
        tool, arguments = tool_call_for(action, working_directory(body))
        return replace(
            base,
            kind="tool",
            tool=tool,
            arguments=json.dumps(arguments),
            call_id=f"call_scripted_{at}_{done}",
        )
    summary = ", ".join(action.describe() for action in script.actions)
    return replace(base, text=f"Done: {summary}." if summary else "Done.")


def usage_for(body: Mapping[str, Any], reply: Reply) -> dict[str, int]:
    """``@tokens`` when given, else a deterministic count: characters // 4, at least 1."""
    if reply.tokens is not None:
        prompt, completion = reply.tokens
    else:
        prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
        completion = max(1, len(reply.completion_text) // 4)
    return token_usage(prompt, completion)
