"""Istio's ``exportTo``: which namespaces may see a service or a policy.

A list of namespace names and the reserved words ``.`` (the namespace of the thing exported),
``*`` (every namespace) and ``~`` (none). An empty list means ``*``, as in Istio. ``*`` and
``~`` stand alone. Visibility is by the viewing proxy's namespace; a proxy always sees its own
service (its inbound side is translated from it).
"""

from __future__ import annotations

from collections.abc import Sequence

from interlock.model.names import namespace_error

EVERYWHERE = "*"
OWN_NAMESPACE = "."
NOWHERE = "~"
_RESERVED = (EVERYWHERE, OWN_NAMESPACE, NOWHERE)


def export_to_errors(values: Sequence[str]) -> list[tuple[int | None, str]]:
    """(index or None for the whole list, message) for each rule ``values`` breaks."""
    errors: list[tuple[int | None, str]] = []
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value not in _RESERVED and (message := namespace_error(value)):
            errors.append((index, f"{message}, or '.', '*' or '~'"))
        elif value in seen:
            errors.append((index, f"{value!r} is listed twice"))
        seen.add(value)
    for word, meaning in ((EVERYWHERE, "every namespace"), (NOWHERE, "no namespace")):
        if word in values and len(values) > 1:
            errors.append((None, f"{word!r} ({meaning}) cannot be combined with other values"))
    return errors


def exported_to(export_to: Sequence[str], owner_namespace: str, namespace: str) -> bool:
    """True when something of ``owner_namespace`` with ``export_to`` is visible in
    ``namespace``."""
    if not export_to or EVERYWHERE in export_to:
        return True
    if OWN_NAMESPACE in export_to and namespace == owner_namespace:
        return True
    return namespace in export_to


def restricts(export_to: Sequence[str]) -> bool:
    """True when ``export_to`` hides from some namespace (anything but empty or ``*``)."""
    return bool(export_to) and EVERYWHERE not in export_to
