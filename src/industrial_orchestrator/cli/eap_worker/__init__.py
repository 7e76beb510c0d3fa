"""The reference external agent: ``orchestrator worker``, an EAP client written to be read.

It plugs any command-line program into the orchestrator: for each task it pulls, it runs
``--command`` through the shell in the task's workspace and reports how it ended. It is
also the example for agent authors (docs/external-agents.md has the protocol):

1. **Register** (``POST /agents/external/register``): the answer is the agent id, an
   ``auth_token`` and the heartbeat interval the orchestrator wants.
2. **Heartbeat** from a task of its own, so long commands never delay it: every beat
   renews the leases of the tasks held and answers a fresh token, adopted at once.
   ``busy`` while every slot runs a command, ``healthy`` otherwise; ``busy`` (or
   ``offline``, after missed beats) makes the server refuse work, so a freed slot beats
   ``healthy`` again before it pulls.
3. **Pull** (``POST .../tasks/next``, a long-poll) from ``--concurrency`` slots.
4. **Run** the command: shell, workspace as working directory, prompt on stdin and in
   the environment; its output echoed, kept for the result and shipped as session logs.
   The command may report the tokens and money it spent in ``$ORCHESTRATOR_USAGE_FILE``.
5. **Report** (``POST .../tasks/{id}/result``) with the attempt number as fencing token,
   and the usage reported: 409 ``lease_lost`` means someone else owns the task now, so
   the result is dropped.
6. **Leave** (``DELETE``) on SIGINT or SIGTERM, after the running commands were killed
   and reported failed.

A token the server refuses (401: it restarted with another SECRET_KEY, or was down longer
than a token lives) is not the end: the worker registers again under its name, which
resumes the same agent, and carries on; a result in flight is sent with the new token
(the lease's attempt number decides whether it still counts). It stops only when the
agent was removed (401 ``agent_removed``) or registration itself is refused.

Where each part lives, in reading order:

- ``agent``: the worker itself, its slots pulling (3) and running tasks, start to stop;
- ``membership``: registering (1), registering again after a refused token, leaving (6);
- ``heartbeat``: the beats (2) and the tasks they hold;
- ``command``: running a task's command (4) and ending its whole process group;
- ``workspace``: the directory it runs in and the environment it gets;
- ``output``: its output, echoed, kept and shipped to the session's logs;
- ``usage``: the usage file the command may write;
- ``report``: the Task Result and sending it (5);
- ``protocol``: the endpoints, timeouts and error shape every request shares;
- ``settings`` and ``console``: what the command line says, and the worker's warnings.

``cli/worker.py`` is the command that parses the options and starts it.
"""
