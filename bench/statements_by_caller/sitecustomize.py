"""Which code runs which SQL statements, counted: a probe for the benchmarks.

PostgreSQL's statement log says what ran, not who asked. Put this folder first on
``PYTHONPATH`` and set ``STATEMENTS_BY_CALLER`` to a path prefix; every Python process
started so (a benchmark's own excepted) then counts each statement it runs directly on
asyncpg (``storage/direct_execution.py``: the hot statements, on PostgreSQL) by its text
and by the innermost ``CALLER_DEPTH`` (5) functions of ``industrial_orchestrator`` that
asked for it, and each it runs through SQLAlchemy by its text (its callers only when
SQLAlchemy runs it outside a greenlet: the ORM's own statements have none). It writes
the counts to ``<STATEMENTS_BY_CALLER>.<pid>.txt`` every few seconds: count, statement,
callers (innermost first). Example (docs/benchmarks.md)::

    STATEMENTS_BY_CALLER=/tmp/sql PYTHONPATH=$PWD/bench/statements_by_caller:$PWD/src \\
        .venv/bin/python bench/engine_sessions.py --backend postgresql --sessions 40
    # then: sort -rn /tmp/sql.*.txt | head -40
"""

from __future__ import annotations

import os
import sys

_SCRIPT = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
_A_BENCHMARK = os.path.basename(os.path.dirname(_SCRIPT)) == "bench"

if os.environ.get("STATEMENTS_BY_CALLER") and not _A_BENCHMARK:
    import collections
    import threading
    import time
    import traceback
    from typing import Any

    _DEPTH = int(os.environ.get("CALLER_DEPTH", "5"))
    _WRITE_EVERY_S = 3.0
    _PASSED_THROUGH = ("direct_execution.py", "unit_of_work.py")
    _counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def _callers() -> str:
        frames = [
            f"{os.path.basename(frame.filename)[:-3]}:{frame.name}"
            for frame in traceback.extract_stack(limit=30)
            if "industrial_orchestrator" in frame.filename
            and not frame.filename.endswith(_PASSED_THROUGH)
        ]
        return " < ".join(reversed(frames[-_DEPTH:]))

    def _install() -> None:
        # The module is imported once the server builds its storage: wait for it, then
        # wrap the one function every direct statement goes through.
        name = "industrial_orchestrator.storage.direct_execution"
        while name not in sys.modules:
            time.sleep(0.05)
        time.sleep(0.2)  # let the module finish executing
        module: Any = sys.modules[name]
        call = module._call

        async def _counted(db: Any, plan: Any, method: str, arguments: Any, **options: Any) -> Any:
            _counts[(" ".join(plan.sql.split())[:70], _callers())] += 1
            return await call(db, plan, method, arguments, **options)

        module._call = _counted

        # And every statement that goes through SQLAlchemy (the ORM's, SQLite's too).
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def _through_sqlalchemy(
            conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
        ) -> None:
            _counts[(" ".join(statement.split())[:70], _callers())] += 1

        event.listen(Engine, "before_cursor_execute", _through_sqlalchemy)
        path = f"{os.environ['STATEMENTS_BY_CALLER']}.{os.getpid()}.txt"
        while True:
            time.sleep(_WRITE_EVERY_S)
            with open(path, "w", encoding="utf-8") as out:
                for (statement, callers), count in _counts.most_common():
                    out.write(f"{count:7d} {statement} || {callers}\n")

    threading.Thread(target=_install, name="statements-by-caller", daemon=True).start()
