"""The inline cascade: the gateway grades an answer with the grader's judge before it
answers, and below the threshold escalates to the model the router picks next.

Each attempt is an escalation like the client's cascade makes: its grade is posted as the
grader's feedback (source ``grader``) before the router is asked again with the attempts in
``previous``, so the chain's propensities and credit stay exact. The answer sent is the best
graded one (the latest among equals). A judge that fails or says no grade ends the cascade
with the answer in hand: the judge never fails a request. Non-streaming only: the answer must
be whole to be graded before the client gets a byte.
"""

from __future__ import annotations

import asyncio

import orjson

from bandit_router.core import InvalidInput
from bandit_router.gateway.grader import Grader, answer_text
from bandit_router.gateway.grading import GRADER_SOURCE
from bandit_router.gateway.options import GatewayOptions
from bandit_router.gateway.wire import ChatCompletionIn
from bandit_router.router import FeedbackRequest, Router, RouteResult


def cascade_threshold(
    chat: ChatCompletionIn, pinned: bool, options: GatewayOptions, grader: Grader | None
) -> float | None:
    """The request's threshold (None: no cascade). A cascade the request asks for and cannot
    have is refused; the configured default applies where it can (routed, not streamed)."""
    asked = chat.bandit.cascade
    if asked is None:
        usable = not (chat.stream or pinned or grader is None)
        return options.cascade_accept if usable else None
    if grader is None:
        raise InvalidInput(
            ("bandit", "cascade"),
            "the cascade grades with the grader's judge: configure a [grader]",
        )
    if chat.stream:
        raise InvalidInput(
            ("stream",),
            "a cascade answers once its answer is graded, so it cannot stream: send "
            "stream: false, or no bandit.cascade",
        )
    if pinned:
        raise InvalidInput(
            ("model",),
            f"a cascade escalates among the router's models: name the alias "
            f"{options.model_alias!r}, not a model",
        )
    return asked.accept


async def grade_now(
    router: Router,
    grader: Grader,
    decision: RouteResult,
    prompt: list[dict[str, str]],
    answer: bytes,
) -> float | None:
    """The attempt's grade, posted as the grader's feedback (an escalation reads the grades
    of the attempts it continues); None when the judge gave none."""
    try:
        text = answer_text(orjson.loads(answer)) or ""
    except orjson.JSONDecodeError:
        text = ""
    quality = await grader.grade_inline(prompt, text)
    if quality is not None:
        request = FeedbackRequest(
            decision_id=decision.decision_id,
            quality=quality,
            source=GRADER_SOURCE,
            every_tenant=True,
        )
        await asyncio.to_thread(router.feedback, request)
    return quality
