"""The task aggregate: the record (``task``), its attempts (leases), events, graph,
workspaces, artifacts, file conflicts and the loop guard."""
