"""The agent aggregate: the record (``agent``), its events, liveness, plans, records per
task type, routing and tiers."""
