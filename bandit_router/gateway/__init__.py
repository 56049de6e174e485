"""The OpenAI-compatible gateway: /v1/chat/completions and /v1/models in front of the router.

options (its configuration values), wire (the OpenAI request and error shapes), upstream (one
call to a model's OpenAI-compatible server), proxy (the use case: route, call, fall back,
record) and endpoints (the HTTP routes).
"""
