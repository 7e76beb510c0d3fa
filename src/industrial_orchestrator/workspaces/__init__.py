"""Sessions' git working trees and the files written into them: an adapter behind the
ports the services name (``services.ports.WorkingTrees``, ``ArtifactWriter``) and the
executors' ``TreeSnapshots``, built by ``bootstrap``.

``worktrees`` makes and removes a session's tree (``GitWorktrees``, the object the rest of
the orchestrator holds); ``commits``, ``diffs`` and ``snapshots`` work in a tree once it is
made; ``git_commands`` runs git the hardened way over ``git_process``, the one process in
a worker thread; ``bindings`` records where a session works; ``copying`` and ``deleting``
handle directories without following a link; ``files`` writes artifacts confined to a
workspace.
"""
