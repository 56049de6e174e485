"""OpenAI's wire format, as the official SDK sends and reads it: the chat request, the model
list and the error body. Validated here, once; the request's other fields travel untouched."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bandit_router.schemas import (
    Dollars,
    FeatureKey,
    FeatureText,
    Finite,
    Name,
    RouteConstraints,
)

IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})


class _Open(BaseModel):
    """OpenAI adds fields often; the ones the gateway does not read are passed on as sent."""

    model_config = ConfigDict(extra="allow")


class ContentPart(_Open):
    type: str = Field(max_length=64)
    text: str | None = None


class ChatMessage(_Open):
    role: str = Field(min_length=1, max_length=64)
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text" and p.text)

    def images(self) -> int:
        if not isinstance(self.content, list):
            return 0
        return sum(1 for part in self.content if part.type in IMAGE_PART_TYPES)


class StreamOptions(_Open):
    include_usage: bool | None = None


class CascadeOptions(BaseModel):
    """Grade each answer with the grader's judge before answering; below ``accept``, escalate
    to the next model the router picks."""

    model_config = ConfigDict(extra="forbid")

    accept: float = Field(ge=0.0, le=1.0)


class BanditOptions(BaseModel):
    """The router's options, in the body's extra field ``bandit`` (the SDK's ``extra_body``).
    Unknown fields are refused, so a misspelt option is not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    cost_weight: Dollars | None = None
    constraints: RouteConstraints = Field(default_factory=RouteConstraints)
    task_type: Name | None = None
    features: dict[FeatureKey, Finite | FeatureText] = Field(default_factory=dict, max_length=200)
    unit_id: Name | None = None
    experiment: Name | None = None
    cascade: CascadeOptions | None = None


class ChatCompletionIn(_Open):
    model: Name
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    bandit: BanditOptions = Field(default_factory=BanditOptions)

    @property
    def wants_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def images(self) -> int:
        return sum(message.images() for message in self.messages)

    def prompt(self) -> list[dict[str, str]]:
        """The messages' text, as the grader's judge reads them (images left out)."""
        return [{"role": m.role, "content": m.text()} for m in self.messages]


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI answers an error."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def model_entry(name: str, owned_by: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owned_by}
