"""Problems: user mistakes found while translating, shown beside the resources."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.StrEnum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, order=True)
class Problem:
    """``resource`` names what is wrong (``Service/default/b``), ``field`` where, and why."""

    resource: str
    field: str
    message: str
    severity: Severity = Severity.ERROR
