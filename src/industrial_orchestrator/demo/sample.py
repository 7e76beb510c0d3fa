"""The demo's sample repository and the session run on it: a small change in three tasks
(code, tests, docs) planned by the architect agent, all scripted so no API key is needed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

FILES = {
    "README.md": "# calc\n\nA tiny calculator.\n\n## Functions\n\n- `add(a, b)`\n",
    "calc.py": 'def add(a: int, b: int) -> int:\n    """The sum of a and b."""\n    return a + b\n',
}

TITLE = "Add multiplication to calc"
VERIFY_COMMAND = "python3 test_calc.py"

_MULTIPLY = (
    "\n\ndef multiply(a: int, b: int) -> int:\n"
    '    """The product of a and b."""\n'
    "    return a * b\n"
)
_TESTS = (
    "from calc import add, multiply\n\n"
    "assert add(2, 3) == 5\n"
    "assert multiply(3, 4) == 12\n"
    "assert multiply(0, 9) == 0\n"
    'print("calc: all checks passed")\n'
)


def _edit(path: str, old: str, new: str) -> str:
    return f"@edit {path}\n```old\n{old}\n```\n```new\n{new}\n```\n"


def _write(path: str, content: str) -> str:
    return f"@write {path}\n```python\n{content}```\n"


PLAN = {
    "tasks": [
        {
            "key": "code",
            "title": "Add multiply() to calc.py",
            "task_type": "code_generation",
            "required_capabilities": ["code_generation"],
            "estimated_effort": 1.0,
            "description": "Add a multiply(a, b) function next to add().\n"
            + _edit("calc.py", "    return a + b", "    return a + b" + _MULTIPLY.rstrip("\n")),
        },
        {
            "key": "tests",
            "title": "Test add() and multiply()",
            "task_type": "testing",
            "required_capabilities": ["testing"],
            "estimated_effort": 1.0,
            "depends_on": ["code"],
            "description": "Write test_calc.py, runnable with plain python.\n"
            + _write("test_calc.py", _TESTS),
        },
        {
            "key": "docs",
            "title": "Document multiply() in the README",
            "task_type": "documentation",
            "required_capabilities": ["documentation"],
            "estimated_effort": 0.5,
            "depends_on": ["code"],
            "description": "List the new function in the README.\n"
            + _edit("README.md", "- `add(a, b)`", "- `add(a, b)`\n- `multiply(a, b)`"),
        },
    ]
}

PROMPT = (
    "Add a multiply(a, b) function to calc.py, with tests and a line in the README.\n\n"
    "(Demo: the scripted model reads the directives below; a real model would not need "
    "them.)\n@plan\n~~~json\n" + json.dumps(PLAN, indent=1) + "\n~~~\n"
)


def make_sample_repository(directory: Path) -> Path:
    """A git repository with the sample files, committed (made once, reused after)."""
    if (directory / ".git").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in FILES.items():
        (directory / name).write_text(content)
    identity = ["-c", "user.name=Demo", "-c", "user.email=demo@localhost"]
    for args in (["init", "-q"], ["add", "."], [*identity, "commit", "-q", "-m", "calc: add"]):
        subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)
    return directory
