"""The shared context aggregate: the record (``context``), its version vectors, merges,
conflicts and events."""
