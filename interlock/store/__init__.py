"""The SQL store: model values in and out, revisioned writes, migrations and a change feed.

See :class:`Store`. The schema is private to this package; callers see only
:mod:`interlock.model` values and the records below.
"""

from interlock.store._engine import DEFAULT_TIMEOUT_S as DEFAULT_DB_TIMEOUT
from interlock.store.records import (
    AppliedResource,
    ApplyResult,
    Change,
    Outcome,
    RevisionInfo,
    WriteResult,
)
from interlock.store.repository import ReadView, Store

__all__ = [
    "DEFAULT_DB_TIMEOUT",
    "AppliedResource",
    "ApplyResult",
    "Change",
    "Outcome",
    "ReadView",
    "RevisionInfo",
    "Store",
    "WriteResult",
]
