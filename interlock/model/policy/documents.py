"""Reading policy documents (what users write in YAML or JSON) into :class:`Resource` values.

A document is a Kubernetes-style object::

    apiVersion: networking.istio.io/v1     # one of the kind's accepted versions
    kind: VirtualService
    metadata: {name: reviews, namespace: default, labels: {...}, annotations: {...}}
    spec: {...}

``metadata.namespace`` defaults to ``default``. Fields the server sets (``metadata.generation``,
``resourceVersion``, ``uid``, ``creationTimestamp``, ``managedFields`` and the top-level
``status``, ``revision`` and ``problems``) are accepted and ignored, so what ``GET`` returns can
be applied again. Any other unknown field is an error. Every error names its field path; in a
batch the path starts with the document's index (``[2].spec.http[0].route``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from interlock.model import names
from interlock.model.errors import FieldError, InvalidInput
from interlock.model.policy.hosts import dns_label_error
from interlock.model.policy.registry import KINDS, KindInfo, known_kinds_text, lookup_kind
from interlock.model.resource import Resource, ResourceKey
from interlock.model.schema import child

DEFAULT_NAMESPACE = "default"
MAX_DEPTH = 64
MAX_NODES = 200_000

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_READ_ONLY_TOP = frozenset({"status", "revision", "problems"})
_READ_ONLY_METADATA = frozenset(
    {"generation", "resourceVersion", "uid", "creationTimestamp", "managedFields", "selfLink"}
)
_METADATA_FIELDS = ("name", "namespace", "labels", "annotations")
_UNSUPPORTED_METADATA = frozenset(
    {"generateName", "ownerReferences", "finalizers", "deletionTimestamp"}
)
#: A Kubernetes object name (a DNS subdomain), matched whole.
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)


def name_error(value: str) -> str | None:
    """A Kubernetes object name: a DNS subdomain (lowercase, digits, '-', '.'; ≤ 253)."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return (
            f"name {value!r} must be 1-253 lowercase letters, digits, '-' or '.', starting and "
            "ending with a letter or digit"
        )
    return None


def plain_json(value: object, path: str, errors: list[FieldError]) -> Any:
    """``value`` as plain JSON data: dicts with string keys (YAML's integer keys become
    strings), lists, strings, finite numbers, booleans, ``None``. Anything else (YAML dates,
    binary, too deep or too large a document) is an error."""
    budget = [MAX_NODES]

    def walk(node: object, at: str, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            if budget[0] == -1:
                errors.append(FieldError(at, f"the document has more than {MAX_NODES} values"))
            return None
        if depth > MAX_DEPTH:
            errors.append(FieldError(at, f"nested more than {MAX_DEPTH} levels deep"))
            return None
        if node is None or isinstance(node, bool | str):
            return node
        if isinstance(node, int):
            return node
        if isinstance(node, float):
            if not math.isfinite(node):
                errors.append(FieldError(at, "must be a finite number"))
            return node
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            for key, item in node.items():
                if isinstance(key, bool) or not isinstance(key, str | int):
                    errors.append(FieldError(at, f"the key {key!r} must be a string"))
                    continue
                text = str(key)
                out[text] = walk(item, child(at, text), depth + 1)
            return out
        if isinstance(node, list | tuple):
            return [walk(item, f"{at}[{i}]", depth + 1) for i, item in enumerate(node)]
        errors.append(
            FieldError(at, f"{type(node).__name__} values are not allowed (quote it as a string)")
        )
        return None

    return walk(value, path, 0)


def _string_map(
    value: object, path: str, errors: list[FieldError], *, labels: bool
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, "must be a map of strings"))
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        at = child(path, str(key))
        if not isinstance(item, str):
            errors.append(FieldError(at, "must be a string"))
            continue
        message = names.label_key_error(str(key))
        if labels and not message:
            message = names.label_value_error(item)
        if message:
            errors.append(FieldError(at, message))
            continue
        out[str(key)] = item
    return out


def _kind(value: object, path: str, errors: list[FieldError]) -> KindInfo[Any] | None:
    if not isinstance(value, str) or not value:
        errors.append(FieldError(child(path, "kind"), "is required (e.g. VirtualService)"))
        return None
    info = lookup_kind(value)
    if info is not None and info.kind == value:
        return info
    if info is not None:
        errors.append(FieldError(child(path, "kind"), f"{value!r}: did you mean {info.kind!r}?"))
    else:
        errors.append(
            FieldError(
                child(path, "kind"),
                f"{value!r} is not a kind Interlock supports; use one of: {known_kinds_text()}",
            )
        )
    return None


def _metadata(
    value: object, path: str, info: KindInfo[Any] | None, errors: list[FieldError]
) -> tuple[str, str, dict[str, str], dict[str, str]]:
    at = child(path, "metadata")
    if not isinstance(value, Mapping):
        errors.append(
            FieldError(
                at,
                "is required: an object with at least a name"
                if value is None
                else "must be an object",
            )
        )
        return "", DEFAULT_NAMESPACE, {}, {}
    for key in value:
        if key in _METADATA_FIELDS or key in _READ_ONLY_METADATA:
            continue
        if key in _UNSUPPORTED_METADATA:
            errors.append(FieldError(child(at, str(key)), f"{key!r} is not supported by Interlock"))
        else:
            errors.append(
                FieldError(
                    child(at, str(key)),
                    f"unknown field {key!r}; expected one of: {', '.join(_METADATA_FIELDS)}",
                )
            )
    name = value.get("name")
    if not isinstance(name, str) or not name:
        errors.append(FieldError(child(at, "name"), "is required"))
        name = ""
    else:
        message = name_error(name)
        if message is None and info is not None and info.name_error is not None:
            message = info.name_error(name)
        if message:
            errors.append(FieldError(child(at, "name"), message))
    namespace = value.get("namespace")
    if namespace is None:
        namespace = DEFAULT_NAMESPACE
    elif not isinstance(namespace, str):
        errors.append(FieldError(child(at, "namespace"), "must be a string"))
        namespace = DEFAULT_NAMESPACE
    elif message := dns_label_error(namespace, "namespace"):
        errors.append(FieldError(child(at, "namespace"), message))
    labels = _string_map(value.get("labels"), child(at, "labels"), errors, labels=True)
    annotations = _string_map(
        value.get("annotations"), child(at, "annotations"), errors, labels=False
    )
    return name, namespace, labels, annotations


def read_resource(
    document: object, path: str = "", *, namespace: str | None = None
) -> tuple[Resource | None, list[FieldError]]:
    """One document as a :class:`Resource` (its spec validated), or ``None`` and every error.

    ``namespace``, when given, is the namespace for a document that names none.
    """
    errors: list[FieldError] = []
    doc = plain_json(document, path, errors)
    if errors:
        return None, errors
    if not isinstance(doc, dict):
        return None, [FieldError(path or "body", "must be an object (a Kubernetes-style resource)")]
    for key in doc:
        if key not in _TOP_FIELDS and key not in _READ_ONLY_TOP:
            errors.append(
                FieldError(
                    child(path, key), f"unknown field {key!r}; expected {', '.join(_TOP_FIELDS)}"
                )
            )
    info = _kind(doc.get("kind"), path, errors)
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or not api_version:
        errors.append(FieldError(child(path, "apiVersion"), "is required"))
    elif info is not None and api_version not in info.api_versions:
        errors.append(
            FieldError(
                child(path, "apiVersion"),
                f"{api_version!r}: {info.kind} is served as {', '.join(info.api_versions)}",
            )
        )
    metadata = doc.get("metadata")
    if namespace is not None and isinstance(metadata, dict) and metadata.get("namespace") is None:
        metadata = {**metadata, "namespace": namespace}
    name, ns, labels, annotations = _metadata(metadata, path, info, errors)
    spec = doc.get("spec")
    if spec is None:
        errors.append(FieldError(child(path, "spec"), "is required"))
    elif info is not None:
        errors.extend(info.parse_spec(spec, child(path, "spec"))[1])
    if info is not None and info.annotation_errors is not None:
        at = child(child(path, "metadata"), "annotations")
        errors.extend(info.annotation_errors(annotations, spec, at))
    if errors or info is None or not isinstance(api_version, str) or not isinstance(spec, dict):
        return None, errors or [FieldError(child(path, "spec"), "must be an object")]
    resource = Resource(
        api_version=api_version,
        kind=info.kind,
        namespace=ns,
        name=name,
        spec=spec,
        labels=labels,
        annotations=annotations,
    )
    return resource, []


def read_resources(
    documents: Sequence[object], *, batch: bool, namespace: str | None = None
) -> list[Resource]:
    """Every document as a :class:`Resource`; raises :class:`InvalidInput` naming every error.

    With ``batch`` each error's field starts with the document's index (``[1].spec...``) and
    two documents naming the same resource are an error.
    """
    errors: list[FieldError] = []
    resources: list[Resource] = []
    seen: dict[ResourceKey, int] = {}
    for index, document in enumerate(documents):
        prefix = f"[{index}]" if batch else ""
        resource, problems = read_resource(document, prefix, namespace=namespace)
        errors.extend(problems)
        if resource is None:
            continue
        if resource.key in seen:
            errors.append(
                FieldError(
                    child(child(prefix, "metadata"), "name"),
                    f"{resource.ref} is also document {seen[resource.key]}",
                )
            )
        seen.setdefault(resource.key, index)
        resources.append(resource)
    if errors:
        raise InvalidInput(_summary(errors, documents, batch), errors=tuple(errors))
    return resources


def _summary(errors: Sequence[FieldError], documents: Sequence[object], batch: bool) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if batch and len(documents) > 1:
        what = f"none of the {len(documents)} documents was applied"
    else:
        what = "the document is invalid"
    return f"{what}: {first.field}: {first.message}{more}"


def similar_kind(word: str) -> str | None:
    """For a "did you mean" on an unknown kind name."""
    candidates = [alias for k in KINDS for alias in k.aliases]
    match = difflib.get_close_matches(word.lower(), candidates, n=1, cutoff=0.7)
    if not match:
        return None
    info = lookup_kind(match[0])
    return info.kind if info else None
