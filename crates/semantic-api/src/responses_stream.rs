//! `POST /v1/responses` with `stream: true`: the Responses API's typed SSE events, each with a
//! `sequence_number`: `response.created`, `response.in_progress`, per output item
//! `response.output_item.added` … `.done` (a message's `content_part.added`, `output_text.delta`s,
//! `output_text.done`, `content_part.done`; a function call's `function_call_arguments.delta` and
//! `.done`), then `response.completed` (or `response.incomplete` at `max_output_tokens`), or
//! `response.failed` on an error. The response is stored before its last event, so a client may
//! continue it as soon as the stream ends. Dropping the body cancels the generation.

use std::convert::Infallible;
use std::mem;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use semantic_chat::ParsedToolCall;
use serde_json::{json, Value};

use crate::generation::{random_id, Generation, Piece, Step};
use crate::responses::{call_item, message_item, Turn};
use crate::AppState;

/// Builds the events of one streamed response.
struct Emitter {
    turn: Turn,
    seq: u64,
    /// Finished output items.
    output: Vec<Value>,
    /// The message being streamed: its id and text so far.
    open: Option<(String, String)>,
    /// Whitespace not yet shown: a reply that turns out to be only tool calls shows none.
    held: String,
}

impl Emitter {
    fn event(&mut self, kind: &str, mut body: Value) -> SseEvent {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        SseEvent::default().event(kind).data(body.to_string())
    }

    fn open_message(&mut self, out: &mut Vec<SseEvent>) {
        let id = random_id("msg_");
        let index = self.output.len();
        let item = json!({"id": id, "type": "message", "role": "assistant", "status": "in_progress", "content": []});
        out.push(self.event("response.output_item.added", json!({"output_index": index, "item": item})));
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        out.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        ));
        self.open = Some((id, String::new()));
    }

    fn text(&mut self, text: String, out: &mut Vec<SseEvent>) {
        if self.open.is_none() {
            if text.trim().is_empty() {
                self.held.push_str(&text);
                return;
            }
            self.open_message(out);
        }
        let delta = mem::take(&mut self.held) + &text;
        let index = self.output.len();
        let Some((id, so_far)) = self.open.as_mut() else { return };
        so_far.push_str(&delta);
        let id = id.clone();
        out.push(self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}),
        ));
    }

    fn close_message(&mut self, out: &mut Vec<SseEvent>) {
        let Some((id, text)) = self.open.take() else { return };
        let index = self.output.len();
        out.push(self.event(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
        ));
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        ));
        let item = message_item(&id, &text, "completed");
        out.push(self.event("response.output_item.done", json!({"output_index": index, "item": item})));
        self.output.push(item);
    }

    fn call(&mut self, call: ParsedToolCall, out: &mut Vec<SseEvent>) {
        self.close_message(out);
        self.held.clear();
        let index = self.output.len();
        let done = call_item(&call, "completed");
        let mut added = done.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        let id = done["id"].clone();
        let arguments = done["arguments"].clone();
        out.push(self.event("response.output_item.added", json!({"output_index": index, "item": added})));
        out.push(self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": arguments}),
        ));
        out.push(self.event(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "name": call.name, "arguments": arguments}),
        ));
        out.push(self.event("response.output_item.done", json!({"output_index": index, "item": done})));
        self.output.push(done);
    }

    fn failed(&mut self, error: &crate::error::ApiError) -> SseEvent {
        let mut response = self.turn.response("failed", mem::take(&mut self.output), None, None);
        response["error"] = json!({"code": error.code.clone().unwrap_or_else(|| "server_error".into()),
                                   "message": error.message});
        self.event("response.failed", json!({"response": response}))
    }
}

/// The SSE body of a streamed response.
pub(crate) fn stream(
    state: AppState,
    generation: Generation,
    turn: Turn,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut emitter = Emitter { turn, seq: 0, output: Vec::new(), open: None, held: String::new() };
    let start = emitter.turn.response("in_progress", Vec::new(), None, None);
    let first = vec![
        emitter.event("response.created", json!({"response": start.clone()})),
        emitter.event("response.in_progress", json!({"response": start})),
    ];
    let body = stream::unfold(Some((generation, emitter)), move |held| {
        let state = state.clone();
        async move {
            let (mut generation, mut emitter) = held?;
            let mut out = Vec::new();
            match generation.next().await? {
                Step::Pieces(pieces) => {
                    for piece in pieces {
                        match piece {
                            Piece::Text(text) => emitter.text(text, &mut out),
                            Piece::Call(call) => emitter.call(call, &mut out),
                        }
                    }
                }
                Step::Done { finish, usage, .. } => {
                    if emitter.open.is_none() && emitter.output.is_empty() {
                        emitter.open_message(&mut out);
                        let held = mem::take(&mut emitter.held);
                        if !held.is_empty() {
                            emitter.text(held, &mut out);
                        }
                    }
                    emitter.close_message(&mut out);
                    let output = emitter.output.clone();
                    let last = match emitter.turn.conclude(&state, output, finish, &usage) {
                        Ok(response) => {
                            let kind = if response["status"] == "incomplete" {
                                "response.incomplete"
                            } else {
                                "response.completed"
                            };
                            emitter.event(kind, json!({"response": response}))
                        }
                        Err(error) => emitter.failed(&error),
                    };
                    out.push(last);
                    return Some((stream::iter(out), None));
                }
                Step::Failed(error) => {
                    out.push(emitter.failed(&error));
                    return Some((stream::iter(out), None));
                }
            }
            Some((stream::iter(out), Some((generation, emitter))))
        }
    })
    .flatten();
    Sse::new(stream::iter(first).chain(body).map(Ok)).keep_alive(KeepAlive::default())
}
