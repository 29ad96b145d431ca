"""The OpenAI Responses API (`client.responses.*`) with the official Python SDK against semantic.

Usage: .venv-test/bin/python tests/sdk/test_responses.py http://127.0.0.1:PORT PHASE STATE_FILE

Run twice by `cargo test --release -p semantic --test it responses_sdk`
(crates/semantic/tests/it/responses_sdk.rs), with a server restart between: PHASE `before` runs
turns 1 and 2 of a conversation (plain, then streamed), a fully streamed three-turn chain and a
tool-call round trip, and writes the ids and usage to STATE_FILE; PHASE `after` (a new server
process on the same cache directory) runs turn 3 from the stored turn 2. Every follow-up turn must
report `cached_tokens` >= the previous turn's `input_tokens` (the chain's agent memory). Prints
one line per test, the measured cached tokens, and "N passed, M failed".
"""

import json
import sys
import time
import traceback

import openai

BASE = sys.argv[1].rstrip("/")
PHASE = sys.argv[2]
STATE = sys.argv[3]
MODEL = "default"
INSTRUCTIONS = "You are a terse assistant. Answer in one short sentence."

oai = openai.OpenAI(base_url=f"{BASE}/v1", api_key="sk-local", max_retries=0, timeout=120)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_cached(previous, current, label):
    cached = current.usage.input_tokens_details.cached_tokens
    print(f"  {label}: input_tokens={current.usage.input_tokens} cached_tokens={cached} "
          f"(previous input_tokens={previous.usage.input_tokens})", flush=True)
    check(cached >= previous.usage.input_tokens, (label, previous.usage, current.usage))


def turn(text, previous=None):
    return oai.responses.create(model=MODEL, input=text, instructions=INSTRUCTIONS, max_output_tokens=24,
                                temperature=0, previous_response_id=previous)


def streamed_turn(text, previous=None):
    """A streamed turn through the SDK's raw event stream; checks the event order."""
    events = list(oai.responses.create(model=MODEL, input=text, instructions=INSTRUCTIONS, max_output_tokens=24,
                                       temperature=0, previous_response_id=previous, stream=True))
    kinds = [e.type for e in events]
    check(kinds[:2] == ["response.created", "response.in_progress"], kinds)
    check(kinds[-1] in ("response.completed", "response.incomplete"), kinds)
    check([e.sequence_number for e in events] == list(range(len(events))), kinds)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    check(final.output_text == deltas, (final.output_text, deltas))
    return final


def test_conversation_before_restart(state):
    one = turn("Name a large city in Europe.")
    check(one.object == "response" and one.id.startswith("resp_"), one)
    check(one.status in ("completed", "incomplete") and one.output_text, one)
    two = streamed_turn("And one in Asia?", previous=one.id)
    check_cached(one, two, "turn 2 (streamed)")
    got = oai.responses.retrieve(two.id)
    check(got.output_text == two.output_text, (got, two))
    items = oai.responses.input_items.list(two.id)
    check([i.type for i in items.data] == ["message"], items)
    state["two"] = {"id": two.id, "input_tokens": two.usage.input_tokens}


def test_streamed_three_turns_with_the_stream_helper(state):
    previous = None
    last = None
    for text in ["Name a color.", "Another one?", "And a third?"]:
        with oai.responses.stream(model=MODEL, input=text, instructions=INSTRUCTIONS, max_output_tokens=16,
                                  temperature=0, previous_response_id=previous) as stream:
            final = None
            for event in stream:
                # The helper accumulates every event; `get_final_response` wants `response.completed`,
                # but a reply cut at max_output_tokens ends with `response.incomplete`, as OpenAI's do.
                if event.type in ("response.completed", "response.incomplete"):
                    final = event.response
            check(final is not None and final.output_text, final)
        if last is not None:
            check_cached(last, final, f"streamed chain ({text})")
        previous, last = final.id, final


def test_store_false_and_delete(state):
    r = oai.responses.create(model=MODEL, input="Say hi.", max_output_tokens=8, temperature=0, store=False)
    try:
        oai.responses.retrieve(r.id)
        raise AssertionError("a store=false response was retrievable")
    except openai.NotFoundError:
        pass
    kept = turn("Say hello.")
    oai.responses.delete(kept.id)
    try:
        turn("Again.", previous=kept.id)
        raise AssertionError("a deleted response was continued")
    except openai.NotFoundError as e:
        check(e.status_code == 404, e)


def test_tool_call_round_trip(state):
    r = oai.responses.create(model=MODEL, input="What is the weather in Paris? Use the tool.", tools=[WEATHER],
                             max_output_tokens=64, temperature=0)
    check(r.status in ("completed", "incomplete"), r)
    calls = [item for item in r.output if item.type == "function_call"]
    # The tiny model may answer in text; when it calls, the round trip must work.
    for call in calls:
        check(call.name == "get_weather" and call.call_id.startswith("call_"), call)
        check(isinstance(json.loads(call.arguments), dict), call)
    call_id = calls[0].call_id if calls else "call_manual"
    if not calls:
        # Replay a call the client made up, as a client may, then answer it.
        inputs = [{"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": '{"city": "Paris"}'}]
    else:
        inputs = []
    inputs.append({"type": "function_call_output", "call_id": call_id, "output": json.dumps({"temp_c": 21})})
    second = oai.responses.create(model=MODEL, input=inputs, previous_response_id=r.id, tools=[WEATHER],
                                  max_output_tokens=32, temperature=0)
    check(second.status in ("completed", "incomplete"), second)
    check_cached(r, second, "tool result turn")


def test_conversation_after_restart(state):
    two = state["two"]
    three = oai.responses.create(model=MODEL, input="And one in Africa?", instructions=INSTRUCTIONS,
                                 max_output_tokens=24, temperature=0, previous_response_id=two["id"])
    cached = three.usage.input_tokens_details.cached_tokens
    print(f"  turn 3 (after restart): input_tokens={three.usage.input_tokens} cached_tokens={cached} "
          f"(turn 2 input_tokens={two['input_tokens']})", flush=True)
    check(cached >= two["input_tokens"], (two, three.usage))
    check(oai.responses.retrieve(two["id"]).id == two["id"], "turn 2 is still stored")


def main():
    if PHASE == "before":
        tests = [test_conversation_before_restart, test_streamed_three_turns_with_the_stream_helper,
                 test_store_false_and_delete, test_tool_call_round_trip]
        state = {}
    else:
        tests = [test_conversation_after_restart]
        with open(STATE) as f:
            state = json.load(f)
    passed = failed = 0
    for fn in tests:
        started = time.monotonic()
        try:
            fn(state)
            passed += 1
            print(f"ok     {fn.__name__} ({time.monotonic() - started:.1f}s)", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"FAILED {fn.__name__}\n{traceback.format_exc()}", flush=True)
    if PHASE == "before":
        with open(STATE, "w") as f:
            json.dump(state, f)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
