"""The script language of the scripted model: the directives a prompt gives, one a line::

    @write src/hello.py          create a file with the next fenced block
    ```python
    print("hello")
    ```
    @edit src/hello.py           replace the ``old`` fenced block by the ``new`` one
    ```old
    hello
    ```
    ```new
    world
    ```
    @bash ls -la                 run a shell command (OpenCode's ``bash`` tool)
    @fail 400                    answer every request with this HTTP status
    @fail 503 0.2                …and ask for a retry after 0.2 s (``retry-after-ms``)
    @slow 2.5                    spread the answer's chunks over this many seconds
    @tokens 1200 80              report exactly this usage (prompt, completion)
    @loop ls                     once the other directives are done, run this shell
                                 command again and again, never answering (an agent
                                 stuck in a loop, for the loop guard)
    @loop model=looper ls        …only when the request is for the model ``looper``
                                 (``opencode_config(models=...)``); other models ignore it
    @plan                        asked for a plan as the architect (``domain.agents.plans``),
    ~~~json                      answer with the next fenced block, verbatim; ignored in
    {"tasks": [...]}             any other request
    ~~~

``parse_script`` reads one message into a ``Script``; what the model answers to a whole
conversation is decided in ``model_replies``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"^[ \t]*@(write|edit|bash|fail|slow|tokens|plan|loop)\b[ \t]*(.*?)\s*$")
_LOOP_MODEL = re.compile(r"^model=(\S+)(?:\s+(.*))?$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: str

    def describe(self) -> str:
        return f"wrote {self.path}"


@dataclass(frozen=True)
class EditFile:
    path: str
    old: str
    new: str

    def describe(self) -> str:
        return f"edited {self.path}"


@dataclass(frozen=True)
class RunCommand:
    command: str

    def describe(self) -> str:
        return f"ran `{self.command}`"


Action = WriteFile | EditFile | RunCommand


@dataclass(frozen=True)
class Loop:
    """Run ``command`` forever once the other actions are done (for ``model`` only, if set)."""

    command: str
    model: str | None = None

    def applies_to(self, model: str) -> bool:
        return self.model is None or self.model == model


@dataclass(frozen=True)
class Script:
    """What one user message asks the model to do."""

    directives: tuple[str, ...] = ()  # one summary line per directive, e.g. "@write a.py"
    actions: tuple[Action, ...] = ()
    fail: int | None = None
    retry_after: float | None = None  # seconds, sent as ``retry-after-ms`` with the failure
    slow: float = 0.0
    tokens: tuple[int, int] | None = None
    plan: str | None = None  # the architect's answer, given only when asked for a plan
    loop: Loop | None = None
    problems: tuple[str, ...] = ()  # directives that could not be read

    @property
    def empty(self) -> bool:
        return not self.directives


@dataclass
class _Block:
    label: str
    text: str


def _fence_at(lines: Sequence[str], index: int) -> tuple[str, str] | None:
    match = _FENCE.match(lines[index])
    return (match.group(1), match.group(2)) if match else None


def _read_block(lines: Sequence[str], index: int) -> tuple[_Block, int]:
    """The fenced block opening at ``lines[index]``, and the index after its closing fence."""
    opening = _fence_at(lines, index)
    assert opening is not None
    fence, label = opening
    body: list[str] = []
    index += 1
    while index < len(lines):
        stripped = lines[index].strip()
        if stripped.startswith(fence) and set(stripped) == {fence[0]}:
            return _Block(label, "".join(line + "\n" for line in body)), index + 1
        body.append(lines[index])
        index += 1
    return _Block(label, "".join(line + "\n" for line in body)), index  # unclosed: to the end


def _blocks_after(lines: Sequence[str], index: int, count: int) -> tuple[list[_Block], int]:
    """Up to ``count`` fenced blocks following a directive line (stopping at the next one)."""
    blocks: list[_Block] = []
    while index < len(lines) and len(blocks) < count:
        if _DIRECTIVE.match(lines[index]):
            break
        if _fence_at(lines, index):
            block, index = _read_block(lines, index)
            blocks.append(block)
        else:
            index += 1
    return blocks, index


def parse_script(text: str) -> Script:
    """The directives of one message, in order. Fenced blocks not claimed by a directive
    are skipped, so a directive quoted inside one is not obeyed."""
    lines = text.splitlines()
    directives: list[str] = []
    actions: list[Action] = []
    problems: list[str] = []
    fail: int | None = None
    retry_after: float | None = None
    slow = 0.0
    tokens: tuple[int, int] | None = None
    plan: str | None = None
    loop: Loop | None = None
    index = 0
    while index < len(lines):
        if _fence_at(lines, index):
            _, index = _read_block(lines, index)
            continue
        match = _DIRECTIVE.match(lines[index])
        index += 1
        if match is None:
            continue
        verb, argument = match.group(1), match.group(2)
        directives.append(f"@{verb} {argument}".rstrip())
        try:
            if verb == "write":
                blocks, index = _blocks_after(lines, index, 1)
                if not argument or not blocks:
                    raise ValueError("needs a path and a fenced block")
                actions.append(WriteFile(argument, blocks[0].text))
            elif verb == "edit":
                blocks, index = _blocks_after(lines, index, 2)
                if not argument or len(blocks) < 2:
                    raise ValueError("needs a path and two fenced blocks (old, new)")
                labelled = {block.label: block.text for block in blocks}
                old = labelled.get("old", blocks[0].text)
                new = labelled.get("new", blocks[1].text)
                actions.append(EditFile(argument, old.removesuffix("\n"), new.removesuffix("\n")))
            elif verb == "bash":
                if not argument:
                    raise ValueError("needs a command")
                actions.append(RunCommand(argument))
            elif verb == "fail":
                status, *delay = argument.split()
                fail = int(status)
                if not 400 <= fail <= 599:
                    raise ValueError("status must be 400-599")
                retry_after = float(delay[0]) if delay else None
            elif verb == "plan":
                blocks, index = _blocks_after(lines, index, 1)
                if not blocks:
                    raise ValueError("needs a fenced block (the plan)")
                plan = blocks[0].text
            elif verb == "loop":
                targeted = _LOOP_MODEL.match(argument)
                command = (targeted.group(2) or "") if targeted else argument
                if not command.strip():
                    raise ValueError("needs a command")
                loop = Loop(command.strip(), targeted.group(1) if targeted else None)
            elif verb == "slow":
                slow = float(argument)
                if slow < 0:
                    raise ValueError("seconds must be >= 0")
            else:  # tokens
                prompt, completion = (int(part) for part in argument.split())
                tokens = (prompt, completion)
        except ValueError as exc:
            problems.append(f"@{verb} {argument}: {exc}".strip())
    return Script(
        directives=tuple(directives),
        actions=tuple(actions),
        fail=fail,
        retry_after=retry_after,
        slow=slow,
        tokens=tokens,
        plan=plan,
        loop=loop,
        problems=tuple(problems),
    )
