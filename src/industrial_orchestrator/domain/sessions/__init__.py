"""The session aggregate: the record (``session``) and its states, actions, options,
progress, health, endings, outcomes, checkpoints, review rounds and stepping rules."""
