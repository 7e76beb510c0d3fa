"""The check behind the ``every_field_set`` builders of the records' mapping tests."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

R = TypeVar("R")


def no_field_at_default(cls: type[R], values: dict[str, Any]) -> R:
    """``cls`` made of ``values``, which name every field of it and leave none at its
    default: a field added to the record must be added to the builder too (and to the
    record's ``*_fields`` mapping, which the tests then check)."""
    assert set(values) == {f.name for f in dataclasses.fields(cls)}
    record = cls(**values)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            assert getattr(record, f.name) != f.default, f.name
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(record, f.name) != f.default_factory(), f.name
    return record
