"""HTTP: POST /v1/chat/completions and GET /v1/models, in OpenAI's wire format.

Every answer, errors included, is OpenAI's shape (``{"error": {"message", "type", "param",
"code"}}``) with the status the official SDK maps to its exception classes; bad input is a 4xx,
never a 500. The body is read and validated here, not by FastAPI, so that no error leaves in
the service's other shape.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from bandit_router.api_auth import RoleRoute, principal_of, role
from bandit_router.core import (
    Conflict,
    DomainError,
    InvalidInput,
    ModelNotAllowed,
    NoEligibleModel,
    NotFound,
    StorageUnavailable,
)
from bandit_router.gateway.answer import Answer
from bandit_router.gateway.proxy import Gateway
from bandit_router.gateway.wire import ChatCompletionIn, error_body, model_entry


def _error(
    status: int, message: str, error_type: str, code: str | None = None, **extra: Any
) -> Response:
    body = error_body(message, error_type, code, extra.pop("param", None))
    body["error"].update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _domain_error(error: DomainError) -> Response:
    if isinstance(error, InvalidInput):
        param = ".".join(error.field_path)
        return _error(400, error.message, "invalid_request_error", "invalid_value", param=param)
    if isinstance(error, NotFound):
        return _error(404, str(error), "invalid_request_error", "model_not_found", param="model")
    if isinstance(error, ModelNotAllowed):
        return _error(403, str(error), "permission_error", "model_not_allowed", reason=error.reason)
    if isinstance(error, NoEligibleModel):
        return _error(
            503, str(error), "service_unavailable", "no_eligible_model", excluded=error.reasons
        )
    if isinstance(error, Conflict):
        return _error(409, str(error), "invalid_request_error", "conflict")
    if isinstance(error, StorageUnavailable):
        return _error(503, str(error), "service_unavailable", "storage_unavailable")
    return _error(400, str(error), "invalid_request_error")


def _validation_message(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}", where


def _response(answer: Answer) -> Response:
    headers = answer.headers()
    if answer.stream is not None:
        return StreamingResponse(
            answer.stream,
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    return Response(
        answer.body, status_code=answer.status, media_type="application/json", headers=headers
    )


_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "OpenAI's chat completion request; other fields are passed to the model. "
    "`bandit` holds the router's options (those of POST /route).",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "description": "the alias (routes) or a pool model"},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {"role": {"type": "string"}, "content": {}},
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "bandit": {"type": "object"},
    },
}


def gateway_routes(gateway: Gateway) -> APIRouter:
    routes = APIRouter(route_class=RoleRoute, tags=["gateway"])
    limit = gateway.options.max_body_bytes

    @routes.post(
        "/v1/chat/completions",
        openapi_extra={
            **role("client"),
            "requestBody": {"content": {"application/json": {"schema": _REQUEST_SCHEMA}}},
        },
        response_class=Response,
    )
    async def chat_completions(request: Request) -> Response:
        """OpenAI's chat completion: `model` = the alias routes, a pool model's name is called
        as asked; router options in the extra field `bandit`. Headers name the decision."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _error(413, f"the body is over {limit} bytes", "invalid_request_error",
                          "request_too_large")  # fmt: skip
        raw = await request.body()
        if len(raw) > limit:
            return _error(413, f"the body is over {limit} bytes", "invalid_request_error",
                          "request_too_large")  # fmt: skip
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return _error(400, f"the body is not valid JSON: {error}", "invalid_request_error",
                          "invalid_json")  # fmt: skip
        if not isinstance(document, dict):
            return _error(400, "the body must be a JSON object", "invalid_request_error",
                          "invalid_json")  # fmt: skip
        try:
            chat = ChatCompletionIn.model_validate(document)
        except ValidationError as error:
            message, param = _validation_message(error)
            return _error(400, message, "invalid_request_error", "invalid_value", param=param)
        try:
            answer = await gateway.chat(document, chat, principal_of(request).tenant)
        except DomainError as error:
            return _domain_error(error)
        return _response(answer)

    @routes.get("/v1/models", openapi_extra=role("client"))
    async def models() -> dict[str, Any]:
        """The alias that routes, and each pool model the gateway can call."""
        return {
            "object": "list",
            "data": [
                model_entry(gateway.options.model_alias, "bandit_router"),
                *(model_entry(name, provider) for name, provider in gateway.callable_models()),
            ],
        }

    return routes
