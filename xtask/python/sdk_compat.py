"""The official `openai` Python SDK against a running `aiwatch gateway`, one phase at a time.

`cargo xtask e2e sdk` starts loopback fakes of the upstreams and the gateway, then runs
`python sdk_compat.py PHASE` once per phase, changing how the fakes behave in between:

- `basics`: every upstream healthy; chat (plain and streamed), embeddings, the model list, an
  Anthropic upstream through the translation, and how errors reach the SDK.
- `failover`: the primaries of three routes start failing after two good answers (503, a hang,
  Anthropic's 529); every request must still succeed, via the next upstream.
- `recovered`: the primaries are healthy again and their breakers closed: traffic is back on
  them, in one attempt.
- `limits`: against a second gateway that allows each key LIMIT requests a minute: the key
  past its limit gets the SDK's RateLimitError (429, Retry-After, `rate_limit_exceeded`),
  while another key still gets answers.

Environment: AIWATCH_GATEWAY_URL (the gateway's base URL ending in /v1), AIWATCH_GATEWAY_KEY
(a client key it accepts), AIWATCH_ROUTES (the route aliases, comma-separated); for `limits`
also AIWATCH_GATEWAY_OTHER_KEY (another accepted key) and AIWATCH_KEY_LIMIT (requests a minute).

Each check runs even after another failed; the last line is "N passed, N failed" and the exit
code is 1 when any failed.
"""

import asyncio
import json
import os
import sys
import time
import traceback

import openai

BASE_URL = os.environ["AIWATCH_GATEWAY_URL"]
KEY = os.environ["AIWATCH_GATEWAY_KEY"]
ROUTES = sorted(os.environ["AIWATCH_ROUTES"].split(","))

# What the fakes say (see xtask/src/e2e_gateway/sdk.rs).
OPENAI_TEXT = "Hello from fake-openai"
CLAUDE_TEXT = "Hello from fake-claude"
BACKUP_TEXT = "Hello from fake-backup"
SLOW_TEXT = "Hello from fake-slow"
BUSY_TEXT = "Hello from fake-busy"
STREAM_TEXT = "Hello! How can I help?"

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]

CHECKS = {}


def check(phase):
    def register(function):
        CHECKS.setdefault(phase, []).append(function)
        return function

    return register


def client(key=KEY, timeout=30.0):
    # No SDK retries: every status the gateway sends must reach the test as it is.
    return openai.OpenAI(base_url=BASE_URL, api_key=key, max_retries=0, timeout=timeout)


def expect_equal(what, got, want):
    assert got == want, f"{what}: expected {want!r}, got {got!r}"


def collect(stream):
    """Text, last finish_reason, usage and chunk count of a chat stream."""
    text, finish, usage, chunks = "", None, None, 0
    for chunk in stream:
        chunks += 1
        expect_equal("chunk object", chunk.object, "chat.completion.chunk")
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    return text, finish, usage, chunks


def chat(model, stream=False, **extra):
    """One chat completion through the gateway: (headers, text, finish_reason, usage)."""
    raw = client().chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=stream, **extra
    )
    if stream:
        text, finish, usage, _ = collect(raw.parse())
    else:
        completion = raw.parse()
        expect_equal("object", completion.object, "chat.completion")
        expect_equal("choices", len(completion.choices), 1)
        choice = completion.choices[0]
        expect_equal("role", choice.message.role, "assistant")
        text, finish, usage = choice.message.content, choice.finish_reason, completion.usage
    return raw.headers, text, finish, usage


def expect_error_shape(error):
    """The body of an error is OpenAI's: {"error": {"message", "type", "param", "code"}}."""
    body = error.body
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    for key in ("message", "type", "param", "code"):
        assert key in body, f"error body lacks {key!r}: {body!r}"
    assert isinstance(body["message"], str) and body["message"], f"empty message: {body!r}"


# === basics ===


@check("basics")
def chat_not_streamed():
    headers, text, finish, usage = chat("smart")
    expect_equal("x-aiwatch-upstream", headers.get("x-aiwatch-upstream"), "fake-openai:gpt-4o-mini")
    expect_equal("x-aiwatch-attempts", headers.get("x-aiwatch-attempts"), "1")
    expect_equal("text", text, OPENAI_TEXT)
    expect_equal("finish_reason", finish, "stop")
    expect_equal("usage", (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (12, 9, 21))


@check("basics")
def chat_streamed():
    raw = client().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    expect_equal("x-aiwatch-upstream", raw.headers.get("x-aiwatch-upstream"), "fake-openai:gpt-4o-mini")
    assert raw.headers.get("content-type", "").startswith("text/event-stream"), raw.headers.get("content-type")
    text, finish, usage, chunks = collect(raw.parse())
    expect_equal("streamed text", text, STREAM_TEXT)
    expect_equal("finish_reason", finish, "stop")
    assert chunks >= 4, f"only {chunks} chunks"
    expect_equal("usage without include_usage", usage, None)


@check("basics")
def chat_streamed_with_usage():
    stream = client().chat.completions.create(
        model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage, _ = collect(stream)
    expect_equal("streamed text", text, STREAM_TEXT)
    expect_equal("finish_reason", finish, "stop")
    assert usage is not None, "no usage chunk although stream_options.include_usage was set"
    expect_equal("total_tokens", usage.total_tokens, 21)


@check("basics")
def chat_streamed_with_the_context_manager():
    # The SDK's `with` form closes the response whatever happens.
    with client().chat.completions.create(model="smart", messages=MESSAGES, stream=True) as stream:
        text, finish, _, _ = collect(stream)
    expect_equal("streamed text", text, STREAM_TEXT)
    expect_equal("finish_reason", finish, "stop")


@check("basics")
def embeddings():
    raw = client().embeddings.with_raw_response.create(model="embed", input=["alpha", "beta"])
    expect_equal(
        "x-aiwatch-upstream", raw.headers.get("x-aiwatch-upstream"), "fake-openai:text-embedding-3-small"
    )
    result = raw.parse()
    expect_equal("object", result.object, "list")
    expect_equal("embeddings", [e.index for e in result.data], [0, 1])
    for item in result.data:
        expect_equal("dimensions", len(item.embedding), 8)
        assert all(isinstance(x, float) for x in item.embedding), item.embedding
    expect_equal("usage.total_tokens", result.usage.total_tokens, 8)
    single = client().embeddings.create(model="embed", input="alpha", encoding_format="float")
    expect_equal("embeddings of one string", len(single.data), 1)


@check("basics")
def responses_create():
    raw = client().responses.with_raw_response.create(model="smart", input="Say hello")
    expect_equal("x-aiwatch-upstream", raw.headers.get("x-aiwatch-upstream"), "fake-openai:gpt-4o-mini")
    response = raw.parse()
    expect_equal("output_text", response.output_text, OPENAI_TEXT)
    expect_equal("usage", (response.usage.input_tokens, response.usage.output_tokens), (11, 5))


@check("basics")
def responses_create_streamed():
    kinds, text, completed = [], "", None
    with client().responses.create(model="smart", input="Say hello", stream=True) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.completed":
                completed = event.response
    expect_equal("first event", kinds[0] if kinds else None, "response.created")
    expect_equal("last event", kinds[-1] if kinds else None, "response.completed")
    expect_equal("streamed text", text, STREAM_TEXT)
    assert completed is not None, f"no response.completed among {kinds}"
    expect_equal("usage", (completed.usage.input_tokens, completed.usage.output_tokens), (12, 9))


@check("basics")
def responses_on_a_route_that_cannot_serve_them_is_a_bad_request():
    try:
        client().responses.create(model="claude", input="Say hello")
    except openai.BadRequestError as error:
        expect_error_shape(error)
        assert "Responses API" in error.body["message"], error.body
        return
    raise AssertionError("a Responses call to an Anthropic-only route was answered")


@check("basics")
def json_schema_answer_from_an_anthropic_upstream():
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    completion = client().chat.completions.create(
        model="claude",
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}},
    )
    choice = completion.choices[0]
    expect_equal("finish_reason", choice.finish_reason, "stop")
    expect_equal("tool_calls", choice.message.tool_calls, None)
    expect_equal("the JSON answer", json.loads(choice.message.content), {"city": "Paris", "country": "France"})


@check("basics")
def models_list_shows_the_aliases():
    models = list(client().models.list())
    expect_equal("model ids", sorted(m.id for m in models), ROUTES)
    for model in models:
        expect_equal("object", model.object, "model")


@check("basics")
def models_retrieve():
    expect_equal("retrieved id", client().models.retrieve("smart").id, "smart")
    try:
        client().models.retrieve("no-such-alias")
    except openai.NotFoundError as error:
        expect_error_shape(error)
        return
    raise AssertionError("GET /v1/models/no-such-alias was answered")


@check("basics")
def async_client_streams():
    async def run():
        async_client = openai.AsyncOpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=30.0)
        try:
            stream = await async_client.chat.completions.create(model="smart", messages=MESSAGES, stream=True)
            text, finish = "", None
            async for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finish = choice.finish_reason or finish
            return text, finish
        finally:
            await async_client.close()

    text, finish = asyncio.run(run())
    expect_equal("streamed text", text, STREAM_TEXT)
    expect_equal("finish_reason", finish, "stop")


@check("basics")
def anthropic_upstream_not_streamed():
    headers, text, finish, usage = chat("claude", max_tokens=64)
    expect_equal(
        "x-aiwatch-upstream", headers.get("x-aiwatch-upstream"), "fake-claude:claude-3-5-haiku-latest"
    )
    expect_equal("text", text, CLAUDE_TEXT)
    expect_equal("finish_reason (end_turn)", finish, "stop")
    expect_equal("usage", (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (12, 9, 21))


@check("basics")
def anthropic_upstream_streamed():
    raw = client().chat.completions.with_raw_response.create(model="claude", messages=MESSAGES, stream=True)
    expect_equal(
        "x-aiwatch-upstream", raw.headers.get("x-aiwatch-upstream"), "fake-claude:claude-3-5-haiku-latest"
    )
    text, finish, _, _ = collect(raw.parse())
    expect_equal("streamed text", text, STREAM_TEXT)
    expect_equal("finish_reason (end_turn)", finish, "stop")


@check("basics")
def wrong_gateway_key_is_an_authentication_error():
    try:
        client(key="sk-not-a-gateway-key").chat.completions.create(model="smart", messages=MESSAGES)
    except openai.AuthenticationError as error:
        expect_equal("status", error.status_code, 401)
        expect_error_shape(error)
        return
    raise AssertionError("a wrong gateway key was accepted")


@check("basics")
def unknown_model_is_not_found():
    # OpenAI answers an unknown model with 404 `model_not_found`; a gateway should too.
    try:
        client().chat.completions.create(model="no-such-alias", messages=MESSAGES)
    except openai.NotFoundError as error:
        expect_error_shape(error)
        assert "no-such-alias" in error.body["message"], f"the message names no model: {error.body}"
        return
    except openai.APIStatusError as error:
        raise AssertionError(
            f"expected 404 (openai.NotFoundError), got {error.status_code} "
            f"{type(error).__name__}: {error.body}"
        ) from None
    raise AssertionError("an unknown model alias was answered")


@check("basics")
def upstream_400_passes_through_and_is_not_retried():
    try:
        client().chat.completions.create(model="strict", messages=MESSAGES)
    except openai.BadRequestError as error:
        expect_error_shape(error)
        expect_equal("type", error.body["type"], "invalid_request_error")
        expect_equal("param", error.body["param"], "messages")
        assert "context length" in error.body["message"], error.body
        attempts = error.response.headers.get("x-aiwatch-attempts")
        if attempts is not None:
            expect_equal("x-aiwatch-attempts", attempts, "1")
        return
    except openai.APIStatusError as error:
        raise AssertionError(
            f"expected 400 (openai.BadRequestError), got {error.status_code} "
            f"{type(error).__name__}: {error.body}"
        ) from None
    raise AssertionError("a request the upstream refused with 400 was answered")


@check("basics")
def stream_broken_midway_never_finishes_cleanly():
    text, finish = "", None
    try:
        stream = client().chat.completions.create(model="fragile", messages=MESSAGES, stream=True)
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    except openai.APIError as error:
        # A broken connection (APIConnectionError) or an error event in the stream: either
        # tells the caller that the answer is incomplete.
        assert finish is None, f"a finish_reason {finish!r} came before the error"
        print(f"    (the SDK raised {type(error).__name__}: {error}; text so far {text!r})")
        return
    raise AssertionError(
        f"the stream ended without an error although the upstream broke off "
        f"(text {text!r}, finish_reason {finish!r})"
    )


@check("basics")
def stalled_stream_is_ended_with_an_error():
    # The upstream sends "Hel", "lo" and then nothing; the gateway's stall limit is 3 s, the
    # SDK's own timeout 30 s: the gateway must end the stream with an error well before.
    started, text, finish = time.monotonic(), "", None
    try:
        stream = client().chat.completions.create(model="stalling", messages=MESSAGES, stream=True)
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    except openai.APITimeoutError:
        raise AssertionError(
            f"the SDK's own 30 s timeout fired: the gateway did not end a stalled stream "
            f"(text so far {text!r})"
        ) from None
    except openai.APIError as error:
        took = time.monotonic() - started
        assert finish is None, f"a finish_reason {finish!r} came before the error"
        assert took < 15, f"the stalled stream was ended only after {took:.1f} s"
        print(f"    (after {took:.1f} s the SDK raised {type(error).__name__}: {error}; text so far {text!r})")
        return
    raise AssertionError(f"a stalled stream ended without an error (text {text!r}, finish_reason {finish!r})")


# === failover ===


def failover(route, primary, backup, primary_text, backup_text, requests=6):
    """Sends `requests` requests, alternating plain and streamed; the primary answers the first
    two and then fails. Every one must succeed; the first two via `primary`, the rest via
    `backup`; the first after the switch took two attempts."""
    seen = []
    for n in range(requests):
        stream = n % 2 == 1
        started = time.monotonic()
        headers, text, finish, _ = chat(route, stream=stream, max_tokens=64)
        took = time.monotonic() - started
        upstream, attempts = headers.get("x-aiwatch-upstream"), headers.get("x-aiwatch-attempts")
        seen.append((upstream, attempts, round(took, 2)))
        expected = primary if n < 2 else backup
        expect_equal(f"request {n + 1} upstream (so far {seen})", upstream, expected)
        if stream:
            want = STREAM_TEXT
        else:
            want = primary_text if n < 2 else backup_text
        expect_equal(f"request {n + 1} text", text, want)
        expect_equal(f"request {n + 1} finish_reason", finish, "stop")
    expect_equal(f"attempts of the first request after the switch ({seen})", seen[2][1], "2")
    print(f"    {route}: (upstream, attempts, seconds) = {seen}")


@check("failover")
def primary_starts_answering_503():
    failover("smart", "fake-openai:gpt-4o-mini", "fake-claude:claude-3-5-haiku-latest", OPENAI_TEXT, CLAUDE_TEXT)


@check("failover")
def primary_starts_hanging():
    failover("steady", "fake-slow:gpt-4o-mini", "fake-backup:gpt-4o-mini", SLOW_TEXT, BACKUP_TEXT)


@check("failover")
def anthropic_primary_starts_answering_529():
    failover("busy", "fake-busy:claude-3-5-haiku-latest", "fake-backup:gpt-4o", BUSY_TEXT, BACKUP_TEXT)


# === recovered ===


@check("recovered")
def traffic_returns_to_the_healed_primaries():
    for route, primary, primary_text in [
        ("smart", "fake-openai:gpt-4o-mini", OPENAI_TEXT),
        ("steady", "fake-slow:gpt-4o-mini", SLOW_TEXT),
        ("busy", "fake-busy:claude-3-5-haiku-latest", BUSY_TEXT),
    ]:
        for n in range(3):
            stream = n % 2 == 1
            headers, text, finish, _ = chat(route, stream=stream, max_tokens=64)
            expect_equal(f"{route} request {n + 1} upstream", headers.get("x-aiwatch-upstream"), primary)
            expect_equal(f"{route} request {n + 1} attempts", headers.get("x-aiwatch-attempts"), "1")
            expect_equal(f"{route} request {n + 1} text", text, STREAM_TEXT if stream else primary_text)
            expect_equal(f"{route} request {n + 1} finish_reason", finish, "stop")


@check("limits")
def a_key_past_its_request_limit_gets_rate_limit_error_with_retry_after():
    limit = int(os.environ["AIWATCH_KEY_LIMIT"])
    for n in range(limit):
        answer = client().chat.completions.create(model="claude", messages=MESSAGES)
        expect_equal(f"request {n + 1} within the limit", answer.choices[0].message.content, CLAUDE_TEXT)
    try:
        client().chat.completions.create(model="claude", messages=MESSAGES)
    except openai.RateLimitError as error:
        expect_equal("status", error.status_code, 429)
        expect_error_shape(error)
        expect_equal("code", error.body.get("code"), "rate_limit_exceeded")
        wait = error.response.headers.get("retry-after")
        assert wait is not None and wait.isdigit() and 1 <= int(wait) <= 60, f"Retry-After: {wait!r}"
        assert str(limit) in error.body["message"], f"the message names no limit: {error.body}"
    else:
        raise AssertionError(f"request {limit + 1} of a key limited to {limit} a minute was answered")
    other = client(key=os.environ["AIWATCH_GATEWAY_OTHER_KEY"])
    answer = other.chat.completions.create(model="claude", messages=MESSAGES)
    expect_equal("another key's answer", answer.choices[0].message.content, CLAUDE_TEXT)


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else ""
    if phase not in CHECKS:
        sys.exit(f"usage: sdk_compat.py {{{'|'.join(CHECKS)}}}")
    print(f"openai {openai.__version__} against {BASE_URL}, phase {phase}")
    passed, failed = 0, 0
    for function in CHECKS[phase]:
        started = time.monotonic()
        try:
            function()
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the next runs
            failed += 1
            took = time.monotonic() - started
            print(f"FAIL {function.__name__} ({took:.2f} s): {type(error).__name__}: {error}")
            detail = traceback.format_exc().rstrip().splitlines()
            print("\n".join("    " + line for line in detail[-8:]))
        else:
            passed += 1
            print(f"ok   {function.__name__} ({time.monotonic() - started:.2f} s)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
