"""Pure rules of the orchestrator: no I/O, nothing but the standard library."""
