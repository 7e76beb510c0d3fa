"""Where a server's CPU goes, by what it was doing: a probe for the benchmarks.

A sampling profiler (py-spy) loses the thread of an ``await``: SQLAlchemy runs each
statement in a greenlet of its own, so the samples of a statement do not say which
request or step asked for it. This probe measures instead. Put its folder first on
``PYTHONPATH`` and set ``CPU_BY_ACTIVITY`` to a path prefix; every Python process started
so (a benchmark's own excepted) then

* runs on asyncio's pure-Python loop and tasks (uvloop is hidden from it: its handles are
  not Python objects), so every callback the loop runs is seen;
* measures the thread CPU time of each callback, and books it to what the task was doing
  when the loop resumed it: the chain of coroutines it awaits, named by the outermost
  ``CPU_DEPTH`` (3) functions of ``industrial_orchestrator`` in it (the HTTP middlewares
  skipped, so a request is named by its route);
* writes the totals to ``<CPU_BY_ACTIVITY>.<pid>.txt`` on ``SIGUSR1``: seconds, share,
  callbacks, activity.

The pure-Python loop and the probe cost about a third more CPU than uvloop: read the
shares, not the seconds. Example (docs/benchmarks.md)::

    CPU_BY_ACTIVITY=/tmp/cpu PYTHONPATH=bench/cpu_by_activity:src \\
        .venv/bin/python bench/engine_sessions.py --sessions 200 &
    # then, while it runs, for the server's pid: kill -USR1 <pid>; sort -rn /tmp/cpu.<pid>.txt
"""

from __future__ import annotations

import os
import sys

_SCRIPT = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
_A_BENCHMARK = os.path.basename(os.path.dirname(_SCRIPT)) == "bench"

if os.environ.get("CPU_BY_ACTIVITY") and not _A_BENCHMARK:
    import asyncio
    import asyncio.events
    import asyncio.tasks
    import collections
    import importlib.abc
    import signal
    import time
    from types import FrameType
    from typing import Any

    class _NoUvloop(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> None:
            if name == "uvloop":
                raise ImportError("measured on asyncio's own loop")

    sys.meta_path.insert(0, _NoUvloop())
    asyncio.tasks.Task = asyncio.Task = asyncio.tasks._PyTask  # type: ignore[attr-defined,misc]

    _DEPTH = int(os.environ.get("CPU_DEPTH", "3"))
    _SKIPPED = ("api/middleware.py", "api/rate_limits.py", "api/operator_auth.py")
    _used: collections.Counter[str] = collections.Counter()
    _runs: collections.Counter[str] = collections.Counter()

    def _awaited(coroutine: Any) -> list[tuple[str, str]]:
        chain: list[tuple[str, str]] = []
        while coroutine is not None and len(chain) < 80:
            code = getattr(coroutine, "cr_code", None) or getattr(coroutine, "gi_code", None)
            if code is None:
                break
            chain.append((code.co_filename, code.co_qualname))
            coroutine = getattr(coroutine, "cr_await", None) or getattr(
                coroutine, "gi_yieldfrom", None
            )
        return chain

    def _activity(handle: asyncio.Handle) -> str:
        callback = handle._callback  # type: ignore[attr-defined]
        task = getattr(callback, "__self__", None)
        if not isinstance(task, asyncio.tasks._PyTask):  # type: ignore[attr-defined]
            return "callback: " + getattr(callback, "__qualname__", repr(callback))[:80]
        chain = _awaited(task.get_coro())
        ours = [
            name
            for path, name in chain
            if "industrial_orchestrator" in path and not path.endswith(_SKIPPED)
        ]
        if not ours:
            return "task: " + (chain[0][1] if chain else "?")
        return " > ".join(ours[:_DEPTH])

    _run = asyncio.events.Handle._run

    def _measured(self: asyncio.Handle) -> None:
        began = time.thread_time()
        activity = _activity(self)
        _run(self)
        _used[activity] += time.thread_time() - began
        _runs[activity] += 1

    asyncio.events.Handle._run = _measured  # type: ignore[method-assign]

    def _write(signum: int, frame: FrameType | None) -> None:
        total = sum(_used.values()) or 1.0
        path = f"{os.environ['CPU_BY_ACTIVITY']}.{os.getpid()}.txt"
        with open(path, "w", encoding="utf-8") as out:
            out.write(f"total {total:.3f} s\n")
            for activity, seconds in _used.most_common():
                share = 100 * seconds / total
                out.write(f"{seconds:8.3f} {share:5.1f}% {_runs[activity]:8d} {activity}\n")

    signal.signal(signal.SIGUSR1, _write)
