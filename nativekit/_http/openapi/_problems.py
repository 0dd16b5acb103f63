"""The problem+json (RFC 9457) error responses every operation shares."""

from __future__ import annotations

from typing import Any

from nativekit._http.problems import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/Problem"
VALIDATION_REF = "#/components/schemas/ValidationProblem"

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "title": "Problem",
        "description": "An error, as problem+json (RFC 9457); some carry more members.",
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "A URI naming the problem type."},
            "title": {"type": "string", "description": "Short summary of the problem type."},
            "status": {"type": "integer", "description": "The HTTP status code."},
            "detail": {"type": "string", "description": "What went wrong this time."},
            "instance": {"type": "string", "description": "The request path."},
        },
        "required": ["type", "title", "status"],
        "additionalProperties": True,
    },
    "ValidationProblem": {
        "title": "ValidationProblem",
        "description": "422: each invalid field with where it was (path, query, header, "
        "body) and what is wrong with it.",
        "allOf": [
            {"$ref": PROBLEM_REF},
            {
                "type": "object",
                "properties": {
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "loc": {
                                    "type": "array",
                                    "items": {"type": ["string", "integer"]},
                                },
                                "msg": {"type": "string"},
                                "type": {"type": "string"},
                            },
                            "required": ["loc", "msg"],
                        },
                    }
                },
            },
        ],
    },
}

#: Shared responses: name, status, description, schema.
_SHARED = (
    ("BadRequest", 400, "The request body is not valid JSON.", PROBLEM_REF),
    ("NotFound", 404, "Nothing exists at this path (or with this id).", PROBLEM_REF),
    ("MethodNotAllowed", 405, "The path does not answer this method.", PROBLEM_REF),
    ("PayloadTooLarge", 413, "The request body is larger than the service accepts.", PROBLEM_REF),
    ("UnsupportedMediaType", 415, "The request body is not JSON.", PROBLEM_REF),
    ("ValidationFailed", 422, "A parameter or the body is invalid.", VALIDATION_REF),
    ("InternalError", 500, "The service failed; the details are in its log.", PROBLEM_REF),
)
STATUS_TO_RESPONSE = {status: name for name, status, _, _ in _SHARED}


def problem_content(ref: str = PROBLEM_REF) -> dict[str, Any]:
    """The ``content`` of a problem+json response."""
    return {PROBLEM_JSON: {"schema": {"$ref": ref}}}


def responses() -> dict[str, Any]:
    """``components/responses``: one entry per shared error status."""
    return {
        name: {"description": description, "content": problem_content(ref)}
        for name, _, description, ref in _SHARED
    }


def ref(status: int) -> dict[str, str]:
    """A reference to the shared response of ``status``."""
    return {"$ref": f"#/components/responses/{STATUS_TO_RESPONSE[status]}"}
