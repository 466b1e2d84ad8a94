"""A streamed chat request through `aiwatch gateway` with the official `openai` SDK, while both
cloud upstreams of the route fail: the answer must come from the real local model.

Run by `cargo xtask e2e local-model`. Environment: AIWATCH_GATEWAY_URL (ending in /v1),
AIWATCH_GATEWAY_KEY, AIWATCH_ROUTE (the alias), AIWATCH_LOCAL_UPSTREAM (`service:model` of the
local upstream). Prints what it saw as one JSON line starting with `result ` and exits 1 when
an expectation fails.
"""

import json
import os
import sys
import time

import openai


def main():
    client = openai.OpenAI(
        base_url=os.environ["AIWATCH_GATEWAY_URL"],
        api_key=os.environ["AIWATCH_GATEWAY_KEY"],
        max_retries=0,
        timeout=120.0,
    )
    route = os.environ["AIWATCH_ROUTE"]
    local = os.environ["AIWATCH_LOCAL_UPSTREAM"]
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model=route,
        messages=[{"role": "user", "content": "Say hello in one short sentence."}],
        stream=True,
        max_tokens=32,
        temperature=0,
    )
    headers_after = time.monotonic() - started
    text, finish, chunks = "", None, 0
    for chunk in raw.parse():
        chunks += 1
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    result = {
        "upstream": raw.headers.get("x-aiwatch-upstream"),
        "attempts": raw.headers.get("x-aiwatch-attempts"),
        "text": text,
        "finish_reason": finish,
        "chunks": chunks,
        "headers_after_s": round(headers_after, 2),
        "total_s": round(time.monotonic() - started, 2),
        "openai": openai.__version__,
    }
    print("result " + json.dumps(result), flush=True)
    problems = []
    if result["upstream"] != local:
        problems.append(f"x-aiwatch-upstream is {result['upstream']!r}, expected {local!r}")
    if not text.strip():
        problems.append("the local model's answer is empty")
    if finish not in ("stop", "length"):
        problems.append(f"finish_reason is {finish!r}, expected 'stop' or 'length'")
    for problem in problems:
        print(f"FAIL {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
