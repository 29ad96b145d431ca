"""End-to-end checks of semantic with the official OpenAI and Anthropic Python SDKs.

Usage: .venv-test/bin/python tests/sdk/test_sdk.py http://127.0.0.1:PORT

Run by `cargo test --release -p semantic --test it sdk` (crates/semantic/tests/it/sdk.rs) against
the real server and the default SmolLM2 model; the venv comes from scripts/setup-python-tests.
Anthropic requests pass `temperature` through `extra_body` (recent SDKs dropped the argument).
The tiny model rarely writes a valid tool call, so tool tests check that the request succeeds and
that any calls are well-formed. SEMANTIC_EXPECT_CACHE=1 makes the agent tests require cached
tokens on the second turn. Prints one line per test and "N passed, M failed"; exits non-zero on
any failure.
"""

import json
import os
import sys
import time
import traceback
import uuid

import anthropic
import openai

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8000"
EXPECT_CACHE = os.environ.get("SEMANTIC_EXPECT_CACHE") == "1"
MODEL = "default"

oai = openai.OpenAI(base_url=f"{BASE}/v1", api_key="sk-local", max_retries=0, timeout=120)
ant = anthropic.Anthropic(base_url=BASE, api_key="local", max_retries=0, timeout=120)

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": WEATHER_OPENAI["function"]["parameters"],
}
# Recent anthropic SDKs no longer take `temperature` as an argument; the server still does.
GREEDY = {"temperature": 0}
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def a_stop_word(text):
    """A word from the middle of `text` that does not occur before it, to use as a stop string."""
    words = [w for w in text.split() if len(w) >= 3 and w.isalpha()]
    for word in words[1:]:
        if text.index(word) > 0:
            return word
    return None


# OpenAI


def test_openai_plain():
    r = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
    check(r.object == "chat.completion", r.object)
    check(r.id.startswith("chatcmpl-"), r.id)
    check(isinstance(r.choices[0].message.content, str) and r.choices[0].message.content, r)
    check(r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage)
    check(r.usage.prompt_tokens_details.cached_tokens >= 0, r.usage)


def test_openai_streaming_matches_plain():
    plain = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
    stream = oai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check(text == plain.choices[0].message.content, (text, plain.choices[0].message.content))
    check(finish == plain.choices[0].finish_reason, finish)
    check(usage is not None and usage.completion_tokens == plain.usage.completion_tokens, usage)


def test_openai_stop_sequence():
    plain = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=32, temperature=0)
    text = plain.choices[0].message.content
    stop = a_stop_word(text)
    check(stop is not None, f"no stop word in {text!r}")
    r = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=32, temperature=0, stop=[stop])
    out = r.choices[0].message.content
    check(stop not in out, (stop, out))
    check(out == text[: text.index(stop)], (out, text, stop))
    check(r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)
    streamed = oai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=32, temperature=0, stop=stop, stream=True)
    joined = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    check(joined == out, (joined, out))


def check_openai_tool_calls(message, finish):
    if message.tool_calls:
        check(finish == "tool_calls", finish)
        for call in message.tool_calls:
            check(call.id.startswith("call_"), call.id)
            check(call.type == "function", call.type)
            check(call.function.name == "get_weather", call.function.name)
            check(isinstance(json.loads(call.function.arguments), dict), call.function.arguments)
    else:
        check(finish in ("stop", "length"), finish)


def test_openai_tools():
    messages = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    for choice in ("auto", "required"):
        r = oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_OPENAI],
                                        tool_choice=choice, max_tokens=40, temperature=0)
        check_openai_tool_calls(r.choices[0].message, r.choices[0].finish_reason)
    stream = oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_OPENAI],
                                         max_tokens=40, temperature=0, stream=True)
    indices = set()
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                indices.add(call.index)
    check(indices == set(range(len(indices))), indices)


def test_openai_tool_result_round_trip():
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"sky": "clear", "celsius": 21})},
    ]
    r = oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_OPENAI],
                                    max_tokens=32, temperature=0)
    check_openai_tool_calls(r.choices[0].message, r.choices[0].finish_reason)


def test_openai_legacy_completion():
    r = oai.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    check(r.object == "text_completion", r.object)
    check(isinstance(r.choices[0].text, str), r)
    check(r.usage.completion_tokens <= 8, r.usage)
    chunks = list(oai.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8,
                                         temperature=0, stream=True))
    check("".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text, chunks)


def test_openai_models_and_errors():
    models = oai.models.list()
    # The loaded model first; other models of the models directory follow, not loaded.
    check(len(models.data) >= 1 and models.data[0].loaded is True, models)
    check(all(m.loaded is False for m in models.data[1:] if m.id != models.data[0].id and not (m.details or {}).get("alias_of")), models)
    named = oai.chat.completions.create(model=models.data[0].id, messages=QUESTION, max_tokens=2)
    check(named.model == models.data[0].id, named.model)
    try:
        oai.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=2)
        check(False, "unknown model accepted")
    except openai.NotFoundError as e:
        check(e.body["code"] == "model_not_found", e.body)
    try:
        oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2, temperature=5)
        check(False, "temperature 5 accepted")
    except openai.BadRequestError as e:
        check(e.body["param"] == "temperature", e.body)
    try:
        oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2, extra_headers={"X-Agent-ID": "no spaces"})
        check(False, "bad agent id accepted")
    except openai.BadRequestError as e:
        check(e.body["param"] == "X-Agent-ID", e.body)


def test_openai_agent_second_turn_is_cached():
    agent = f"sdk-oai-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": "Name a large city in Europe."}]
    first = oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0,
                                        extra_headers={"X-Agent-ID": agent})
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "And one in Asia?"}]
    second = oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0,
                                         extra_body={"agent_id": agent})
    cached = second.usage.prompt_tokens_details.cached_tokens
    check(0 <= cached <= second.usage.prompt_tokens, second.usage)
    if EXPECT_CACHE:
        check(cached >= first.usage.prompt_tokens, (first.usage, second.usage))


# Anthropic


def test_anthropic_plain():
    m = ant.messages.create(model=MODEL, max_tokens=24, messages=QUESTION, extra_body=GREEDY,
                            system="Answer briefly.")
    check(m.type == "message" and m.role == "assistant", m)
    check(m.id.startswith("msg_"), m.id)
    check(m.content[0].type == "text" and m.content[0].text, m.content)
    check(m.stop_reason in ("end_turn", "max_tokens"), m.stop_reason)
    u = m.usage
    count = ant.messages.count_tokens(model=MODEL, messages=QUESTION, system="Answer briefly.")
    check(u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens == count.input_tokens,
          (u, count))
    check(u.output_tokens > 0, u)


def test_anthropic_streaming_matches_plain():
    plain = ant.messages.create(model=MODEL, max_tokens=24, messages=QUESTION, extra_body=GREEDY)
    with ant.messages.stream(model=MODEL, max_tokens=24, messages=QUESTION, extra_body=GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(text == plain.content[0].text, (text, plain.content[0].text))
    check(final.stop_reason == plain.stop_reason, final.stop_reason)
    check(final.usage.output_tokens == plain.usage.output_tokens, final.usage)
    # The SDK swallows `ping` events; the Rust tests check where the server sends it.
    events = [e.type for e in ant.messages.create(model=MODEL, max_tokens=8, messages=QUESTION, stream=True)]
    check(events[:2] == ["message_start", "content_block_start"], events)
    check(events[-3:] == ["content_block_stop", "message_delta", "message_stop"], events)


def test_anthropic_stop_sequence():
    plain = ant.messages.create(model=MODEL, max_tokens=32, messages=QUESTION, extra_body=GREEDY)
    text = plain.content[0].text
    stop = a_stop_word(text)
    check(stop is not None, f"no stop word in {text!r}")
    m = ant.messages.create(model=MODEL, max_tokens=32, messages=QUESTION, extra_body=GREEDY, stop_sequences=[stop])
    out = m.content[0].text
    check(stop not in out, (stop, out))
    check(m.stop_reason == "stop_sequence" and m.stop_sequence == stop, (m.stop_reason, m.stop_sequence))
    with ant.messages.stream(model=MODEL, max_tokens=32, messages=QUESTION, extra_body=GREEDY,
                             stop_sequences=[stop]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(streamed == out and final.stop_sequence == stop, (streamed, final.stop_sequence))


def check_anthropic_tools(m):
    uses = [b for b in m.content if b.type == "tool_use"]
    if uses:
        check(m.stop_reason == "tool_use", m.stop_reason)
        for block in uses:
            check(block.id.startswith("toolu_"), block.id)
            check(block.name == "get_weather", block.name)
            check(isinstance(block.input, dict), block.input)
    else:
        check(m.stop_reason in ("end_turn", "max_tokens"), m.stop_reason)


def test_anthropic_tools():
    messages = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    for choice in ({"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "get_weather"}):
        m = ant.messages.create(model=MODEL, max_tokens=40, messages=messages, tools=[WEATHER_ANTHROPIC],
                                tool_choice=choice, extra_body=GREEDY)
        check_anthropic_tools(m)
    with ant.messages.stream(model=MODEL, max_tokens=40, messages=messages, tools=[WEATHER_ANTHROPIC],
                             extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    check_anthropic_tools(final)


def test_anthropic_tool_result_round_trip():
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "clear sky, 21 C"}]},
                                     {"type": "text", "text": "Summarize."}]},
    ]
    m = ant.messages.create(model=MODEL, max_tokens=32, messages=messages, tools=[WEATHER_ANTHROPIC], extra_body=GREEDY)
    check_anthropic_tools(m)


def test_anthropic_errors():
    try:
        ant.messages.create(model="no-such-model", max_tokens=8, messages=QUESTION)
        check(False, "unknown model accepted")
    except anthropic.NotFoundError as e:
        check(e.body["error"]["type"] == "not_found_error", e.body)
    try:
        ant.messages.create(model=MODEL, max_tokens=8, messages=QUESTION, extra_body={"temperature": 1.5})
        check(False, "temperature 1.5 accepted")
    except anthropic.BadRequestError as e:
        check(e.body["type"] == "error" and e.body["error"]["type"] == "invalid_request_error", e.body)


def test_anthropic_agent_second_turn_is_cached():
    agent = f"sdk-ant-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "user", "content": "Name a large city in Europe."}]
    first = ant.messages.create(model=MODEL, max_tokens=16, messages=messages, extra_body=GREEDY,
                                system="You are a terse assistant.", extra_headers={"X-Agent-ID": agent})
    check(first.usage.cache_creation_input_tokens > 0 or first.usage.cache_read_input_tokens > 0, first.usage)
    messages += [{"role": "assistant", "content": first.content[0].text},
                 {"role": "user", "content": "And one in Asia?"}]
    second = ant.messages.create(model=MODEL, max_tokens=16, messages=messages, extra_body=GREEDY,
                                 system="You are a terse assistant.", extra_headers={"X-Agent-ID": agent})
    u = second.usage
    check(u.input_tokens == 0, u)
    if EXPECT_CACHE:
        check(u.cache_read_input_tokens > 0, u)


def main():
    tests = [(name, fn) for name, fn in sorted(globals().items()) if name.startswith("test_") and callable(fn)]
    passed = failed = 0
    for name, fn in tests:
        started = time.monotonic()
        try:
            fn()
            passed += 1
            print(f"ok     {name} ({time.monotonic() - started:.1f}s)", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"FAILED {name}\n{traceback.format_exc()}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
