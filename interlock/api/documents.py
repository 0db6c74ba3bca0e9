"""Request bodies of the resource routes: policy documents as JSON or YAML.

``application/json`` (and ``application/*+json``) carries one object or a list of objects;
``application/yaml``, ``application/x-yaml`` and ``text/yaml`` carry one document or a
multi-document stream (``---``), like ``kubectl apply -f``. Any other content type is refused
with 415 before the body is read; a body that does not parse is a 400 problem naming where.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from fastapi import Request

from interlock.api.body import is_json
from interlock.api.problems import HTTPProblem
from interlock.model.errors import FieldError, InvalidInput
from interlock.model.names import DNS_LABEL
from interlock.model.policy.documents import DNS_SUBDOMAIN

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
MEDIA_TYPES = ("application/json", *sorted(YAML_TYPES))

#: How the routes document their request body in OpenAPI.
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/PolicyDocument"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/PolicyDocument"},
                            "minItems": 1,
                        },
                    ]
                }
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def policy_document_schema(kinds: list[str], api_versions: list[str]) -> dict[str, Any]:
    """The JSON Schema of one policy document: the envelope every kind shares. Each kind's
    ``spec`` is documented in docs/policies.md (Istio's field names)."""
    return {
        "type": "object",
        "description": "a policy resource, as kubectl and istioctl write it",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"type": "string", "enum": api_versions},
            "kind": {"type": "string", "enum": kinds},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": f"^{DNS_SUBDOMAIN}$", "maxLength": 253},
                    "namespace": {"type": "string", "pattern": f"^{DNS_LABEL}$", "maxLength": 63},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    },
                },
            },
            "spec": {"type": "object", "description": "the kind's spec (docs/policies.md)"},
        },
    }


@dataclass(frozen=True)
class Documents:
    """The parsed body: its documents, and whether it was a batch (a JSON list or a YAML
    stream of several documents) rather than one object."""

    items: list[Any]
    batch: bool


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


async def read_documents(request: Request) -> Documents:
    """The request's documents (a FastAPI dependency). 415 for a content type that is neither
    JSON nor YAML, 400 for a body that does not parse, 422 for one without documents."""
    content_type = request.headers.get("content-type")
    kind = media_type(content_type)
    if not is_json(content_type) and kind not in YAML_TYPES:
        shown = repr(content_type) if content_type else "no content type"
        message = f"the body must be {', '.join(MEDIA_TYPES)}, not {shown}"
        raise HTTPProblem(415, message, errors=(FieldError("header.content-type", message),))
    body = await request.body()
    if kind in YAML_TYPES:
        documents = _yaml_documents(body)
        if len(documents) == 1 and isinstance(documents[0], list):
            return _non_empty(Documents(documents[0], batch=True))
        return _non_empty(Documents(documents, batch=len(documents) > 1))
    value = _json_value(body)
    if isinstance(value, list):
        return _non_empty(Documents(value, batch=True))
    return Documents([value], batch=False)


def _non_empty(documents: Documents) -> Documents:
    if not documents.items:
        message = "the body holds no documents"
        raise InvalidInput(message, errors=(FieldError("body", message),))
    return documents


def _malformed(what: str, reason: str) -> HTTPProblem:
    message = f"the body is not valid {what}: {reason}"
    return HTTPProblem(
        400,
        message,
        errors=(FieldError("body", message),),
        title=f"Malformed {what}",
        slug=f"malformed-{what.lower()}",
    )


def _json_value(body: bytes) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise _malformed("JSON", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError:
        raise _malformed("JSON", "it is not UTF-8 text") from None
    except RecursionError:
        raise _malformed("JSON", "it is nested too deeply") from None


def _yaml_documents(body: bytes) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(body.decode("utf-8")) if d is not None]
    except UnicodeDecodeError:
        raise _malformed("YAML", "it is not UTF-8 text") from None
    except yaml.MarkedYAMLError as e:
        where = ""
        if e.problem_mark is not None:
            where = f" at line {e.problem_mark.line + 1} column {e.problem_mark.column + 1}"
        raise _malformed("YAML", f"{e.problem or e.context or 'cannot parse'}{where}") from None
    except yaml.YAMLError as e:
        raise _malformed("YAML", str(e).splitlines()[0] if str(e) else "cannot parse") from None
    except RecursionError:
        raise _malformed("YAML", "it is nested too deeply") from None
