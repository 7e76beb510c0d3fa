"""The parts of the in-memory unit of work (``testing.memory_unit_of_work``): the store
and its transactions (``store``), and one module per repository of ``services.ports``,
each keeping the semantics of its SQL twin in ``storage/``."""
