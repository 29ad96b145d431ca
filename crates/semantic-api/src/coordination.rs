//! Coordination sessions over HTTP (`/v1/coordination/…`): the `Coordinator` (sessions by
//! namespace, permanent agents' histories, the store on disk) and running turns: a planned
//! turn's messages go through the chat template and the scheduler under the agent's memory id,
//! the reply is cleaned and committed, and the session is written before the response (outside
//! the session's lock: a state is cloned under it and written after, a newer state never
//! overwritten by an older one, see `SessionWriter`). A turn that fails or is cut (shutdown,
//! client gone) is not committed. Broadcast rounds run their turns concurrently. Session logic
//! itself lives in `semantic-coord`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use semantic_coord::{
    CoordError, Lifecycle, Session, SessionStore, SessionWriter, StoredHistory, TurnPlan, TurnRecord, TurnUsage,
};
use semantic_engine::SamplingParams;
use semantic_scheduler::{AgentId, AgentKey, AgentRef, GenerateRequest, Namespace};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::coord_wire::turn_json;
use crate::error::{ApiError, ErrorKind, Flavor};
use crate::generation::{now_secs, Finish, Generation, Job, Piece, Step};
use crate::AppState;

/// One session, whether a turn is running in it, and the writer of its file.
pub(crate) struct Slot {
    session: Mutex<Session>,
    busy: AtomicBool,
    writer: SessionWriter,
}

impl Slot {
    fn new(session: Session) -> Self {
        Slot { session: Mutex::new(session), busy: AtomicBool::new(false), writer: SessionWriter::default() }
    }

    /// The session, locked briefly (never across an await).
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock leaves a consistent session: every change is one call.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a turn as running; 409 when one already is.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<BusyGuard, ApiError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(ApiError::new(ErrorKind::Conflict, "a turn is already running in this session")
                .with_code("session_busy"));
        }
        Ok(BusyGuard(Arc::clone(self)))
    }
}

/// Clears the busy flag when the turn ends, however it ends.
pub(crate) struct BusyGuard(Arc<Slot>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

type Key = (String, String);

/// Every session the server knows, by (namespace, session id).
pub struct Coordinator {
    sessions: Mutex<HashMap<Key, Arc<Slot>>>,
    histories: Mutex<HashMap<Key, StoredHistory>>,
    store: Option<SessionStore>,
}

impl Coordinator {
    /// Loads the sessions stored under `dir` (None: in memory only). Damaged files are moved
    /// aside and logged.
    pub fn load(dir: Option<std::path::PathBuf>) -> Self {
        let store = dir.map(SessionStore::new);
        let mut sessions = HashMap::new();
        if let Some(store) = &store {
            let (loaded, problems) = store.load_sessions();
            for err in problems {
                tracing::warn!(%err, "a stored coordination session did not verify and was moved aside");
            }
            if !loaded.is_empty() {
                tracing::info!(sessions = loaded.len(), "coordination sessions restored");
            }
            for session in loaded {
                let key = (session.namespace.clone(), session.id.clone());
                sessions.insert(key, Arc::new(Slot::new(session)));
            }
        }
        Coordinator { sessions: Mutex::new(sessions), histories: Mutex::default(), store }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Key, Arc<Slot>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session of the namespace; 404 otherwise (another key's session included).
    pub(crate) fn get(&self, ns: &Namespace, id: &str) -> Result<Arc<Slot>, ApiError> {
        self.map().get(&(ns.as_str().to_owned(), id.to_owned())).cloned().ok_or_else(|| not_found("session", id))
    }

    /// A session by its namespace's name and id (for records that name it, like scenario runs).
    pub(crate) fn slot(&self, ns: &str, id: &str) -> Option<Arc<Slot>> {
        self.map().get(&(ns.to_owned(), id.to_owned())).cloned()
    }

    /// Where sessions are stored (None: in memory only).
    pub(crate) fn store(&self) -> Option<&SessionStore> {
        self.store.as_ref()
    }

    /// Every session of the namespace, oldest first.
    pub(crate) fn list(&self, ns: &Namespace) -> Vec<Arc<Slot>> {
        let mut slots: Vec<Arc<Slot>> =
            self.map().iter().filter(|((n, _), _)| n == ns.as_str()).map(|(_, s)| Arc::clone(s)).collect();
        slots.sort_by_key(|s| {
            let s = s.lock();
            (s.created_at, s.id.clone())
        });
        slots
    }

    /// A permanent agent's history: in memory, else from disk.
    pub(crate) fn history(&self, ns: &str, memory_id: &str) -> Option<StoredHistory> {
        let key = (ns.to_owned(), memory_id.to_owned());
        if let Some(h) = self.histories.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Some(h.clone());
        }
        self.store.as_ref().and_then(|s| s.load_history(ns, memory_id))
    }

    /// Adds a new session and writes it.
    pub(crate) fn insert(&self, session: Session) -> Result<Arc<Slot>, ApiError> {
        let key = (session.namespace.clone(), session.id.clone());
        let slot = Arc::new(Slot::new(session));
        self.save(&slot, slot.lock())?;
        self.map().insert(key, Arc::clone(&slot));
        Ok(slot)
    }

    /// Writes a session and its permanent agents' histories: the state is stamped and cloned
    /// under the lock `session`, which is released before anything is written.
    pub(crate) fn save(&self, slot: &Slot, session: MutexGuard<'_, Session>) -> Result<(), ApiError> {
        let version = slot.writer.stamp();
        let snapshot = session.clone();
        drop(session);
        self.write(slot, version, &snapshot)
    }

    fn write(&self, slot: &Slot, version: u64, session: &Session) -> Result<(), ApiError> {
        let mut histories = self.histories.lock().unwrap_or_else(|p| p.into_inner());
        for (agent, view) in session.spec.agents.iter().zip(&session.views) {
            if agent.lifecycle == Lifecycle::Permanent && !view.history.is_empty() {
                let stored =
                    StoredHistory { history: view.history.clone(), last_prompt_tokens: view.last_prompt_tokens };
                let key = (session.namespace.clone(), view.memory_id.clone());
                if histories.get(&key) != Some(&stored) {
                    if let Some(store) = &self.store {
                        store.save_history(&session.namespace, &view.memory_id, &stored).map_err(store_error)?;
                    }
                    histories.insert(key, stored);
                }
            }
        }
        drop(histories);
        if let Some(store) = &self.store {
            slot.writer.write(store, version, session).map_err(store_error)?;
        }
        Ok(())
    }

    /// Removes a session (not its agents' memory: the caller does that).
    pub(crate) fn remove(&self, ns: &Namespace, id: &str) -> Result<(), ApiError> {
        self.map().remove(&(ns.as_str().to_owned(), id.to_owned()));
        if let Some(store) = &self.store {
            store.delete_session(ns.as_str(), id).map_err(store_error)?;
        }
        Ok(())
    }

    /// Forgets the stored histories whose memory ids start with `prefix`; returns their ids.
    pub(crate) fn forget_histories(&self, ns: &Namespace, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut forgotten: Vec<String> = Vec::new();
        self.histories.lock().unwrap_or_else(|p| p.into_inner()).retain(|(n, id), _| {
            let gone = n == ns.as_str() && id.starts_with(prefix);
            if gone {
                forgotten.push(id.clone());
            }
            !gone
        });
        if let Some(store) = &self.store {
            forgotten.extend(store.delete_histories_with_prefix(ns.as_str(), prefix).map_err(store_error)?);
        }
        forgotten.sort();
        forgotten.dedup();
        Ok(forgotten)
    }
}

fn store_error(err: CoordError) -> ApiError {
    tracing::error!(%err, "coordination store");
    ApiError::new(ErrorKind::Internal, format!("storing the session failed: {err}"))
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no {what} {id:?}")).with_code(format!("{what}_not_found"))
}

/// Maps the domain's errors: invalid → 400 with the field, not found → 404, conflict → 409.
pub(crate) fn coord_error(err: CoordError) -> ApiError {
    match err {
        CoordError::Invalid { param, message } => ApiError::invalid(param, message),
        CoordError::NotFound { what, id } => not_found(what, &id),
        CoordError::Conflict(message) => ApiError::new(ErrorKind::Conflict, message).with_code("session_finished"),
        other @ (CoordError::Io { .. } | CoordError::Corrupt { .. }) => store_error(other),
    }
}

/// What a turn request runs.
#[derive(Debug, Clone)]
pub(crate) enum Run {
    /// One turn, optionally naming the speaker (interrupt).
    Turn(Option<String>),
    /// This many turns (default: one per speaker).
    Round(Option<usize>),
}

/// An SSE event of a turn or round: its name and JSON data.
pub(crate) type Event = (&'static str, Value);

/// A generated reply, before cleaning.
struct Reply {
    text: String,
    usage: TurnUsage,
    finish: &'static str,
}

/// Runs turns and commits each as it completes; events go to `sink` when streaming. Returns the
/// done turns as JSON. An error after some turns were committed leaves those recorded.
pub(crate) async fn run(
    state: &AppState,
    slot: &Arc<Slot>,
    ns: &Namespace,
    what: Run,
    sink: Option<&mpsc::Sender<Event>>,
) -> Result<Vec<Value>, ApiError> {
    let _busy = slot.acquire()?;
    let total = match &what {
        Run::Turn(_) => 1,
        Run::Round(n) => n.unwrap_or_else(|| slot.lock().speakers().len()).max(1),
    };
    let mut done = Vec::new();
    while done.len() < total {
        let mut plans = {
            let session = slot.lock();
            let planned = match &what {
                Run::Turn(speaker) => session.plan_turn(speaker.as_deref()).map(|p| vec![p]),
                Run::Round(_) => session.plan_batch(total - done.len()),
            };
            match planned {
                Err(CoordError::Conflict(_)) if !done.is_empty() => break,
                other => other.map_err(coord_error)?,
            }
        };
        plans.iter_mut().for_each(|p| fit_reply_prefix(state, p));
        for plan in &plans {
            let start = json!({
                "session_id": slot.lock().id, "turn": plan.turn, "round": plan.round,
                "agent_id": plan.agent_id, "agent_name": plan.agent_name,
            });
            emit(sink, ("turn_start", start)).await?;
        }
        let settings = slot.lock().spec.settings.clone();
        let replies =
            futures_util::future::join_all(plans.iter().map(|p| generate(state, p, ns, &settings, sink))).await;
        for (plan, reply) in plans.into_iter().zip(replies) {
            let reply = reply?;
            let (record, json) = commit(state, slot, plan, reply)?;
            emit(sink, ("turn_complete", json.clone())).await?;
            tracing::debug!(turn = record.turn, agent = %record.agent_id, "coordination turn");
            done.push(json);
        }
    }
    Ok(done)
}

/// Cleans a reply and commits it; writes the session.
fn commit(state: &AppState, slot: &Arc<Slot>, plan: TurnPlan, reply: Reply) -> Result<(TurnRecord, Value), ApiError> {
    let mut session = slot.lock();
    let speaker = plan.agent_name.clone();
    let others: Vec<&str> =
        session.spec.agents.iter().map(|a| a.display_name.as_str()).filter(|n| *n != speaker).collect();
    let content = semantic_coord::clean::clean_response(&reply.text, &speaker, &others);
    tracing::debug!(turn = plan.turn, agent = %plan.agent_id, raw = ?reply.text, cleaned = ?content,
        "coordination reply");
    let record = session.commit(plan, content, reply.usage, reply.finish, now_secs()).map_err(coord_error)?;
    let json = turn_json(&session, &record);
    state.coord.save(slot, session)?;
    Ok((record, json))
}

async fn emit(sink: Option<&mpsc::Sender<Event>>, event: Event) -> Result<(), ApiError> {
    match sink {
        Some(tx) if tx.send(event).await.is_err() => {
            Err(ApiError::new(ErrorKind::Unavailable, "the client went away; the turn was not recorded"))
        }
        _ => Ok(()),
    }
}

/// The scheduler request for a planned turn: the agent's messages through the chat template,
/// under its memory id, sampled as the session says.
pub(crate) fn request(
    state: &AppState,
    plan: &TurnPlan,
    ns: &Namespace,
    settings: &semantic_coord::TurnSettings,
) -> Result<GenerateRequest, ApiError> {
    let agent = AgentId::parse(&plan.memory_id)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("memory id {:?}: {e}", plan.memory_id)))?;
    let key = AgentKey::new(ns.clone(), agent.clone());
    let building = |e: &dyn std::fmt::Display| ApiError::new(ErrorKind::Internal, format!("building the prompt: {e}"));
    let mut text = state.prompter.render(&plan.messages, None).map_err(|e| building(&e))?;
    text.push_str(&plan.reply_prefix);
    let prompt = state.prompter.tokenize(&text, Some(&key)).map_err(|e| building(&e))?;
    let left = state.scheduler.max_sequence_tokens().saturating_sub(prompt.len());
    let sampling = SamplingParams {
        temperature: settings.temperature,
        top_p: settings.top_p,
        top_k: settings.top_k,
        repetition_penalty: settings.repetition_penalty,
        seed: settings.seed.map(|s| s.wrapping_add(plan.turn)),
        ..SamplingParams::default()
    };
    Ok(GenerateRequest {
        prompt,
        max_tokens: settings.max_tokens.min(left.max(1)),
        sampling,
        stop: plan.stop.clone(),
        agent: AgentRef { namespace: ns.clone(), agent: Some(agent) },
    })
}

/// Keeps a plan's reply prefix only where the chat template renders an assistant message as its
/// generation prompt followed by the message's text (ChatML, Llama 3, Gemma, ...): then the
/// prompt that ends with the prefill is a prefix of the next turn's and the agent's KV is reused.
/// Elsewhere (Harmony's channels, templates that add reasoning tags) the reply is not prefilled.
pub(crate) fn fit_reply_prefix(state: &AppState, plan: &mut TurnPlan) {
    if plan.reply_prefix.is_empty() {
        return;
    }
    let mut probe = plan.messages.clone();
    probe.push(semantic_chat::Message::new("assistant", format!("{} x", plan.reply_prefix)));
    probe.push(semantic_chat::Message::new("user", "y"));
    let continues = match (state.prompter.render(&plan.messages, None), state.prompter.render(&probe, None)) {
        (Ok(open), Ok(next)) => next.strip_prefix(&open).is_some_and(|rest| rest.starts_with(&plan.reply_prefix)),
        _ => false,
    };
    if !continues {
        plan.reply_prefix.clear();
    }
}

/// Generates one turn's reply, streaming its text to `sink`, within the request timeout.
async fn generate(
    state: &AppState,
    plan: &TurnPlan,
    ns: &Namespace,
    settings: &semantic_coord::TurnSettings,
    sink: Option<&mpsc::Sender<Event>>,
) -> Result<Reply, ApiError> {
    let job = Job { request: request(state, plan, ns, settings)?, tools: None };
    let mut generation = Generation::start(state, job, Flavor::OpenAi)?;
    let limit: Duration = state.options.request_timeout;
    let whole = async {
        let mut text = String::new();
        while let Some(step) = generation.next().await {
            match step {
                Step::Pieces(pieces) => {
                    for piece in pieces {
                        if let Piece::Text(t) = piece {
                            let token = json!({"turn": plan.turn, "agent_id": plan.agent_id, "text": t});
                            emit(sink, ("token", token)).await?;
                            text.push_str(&t);
                        }
                    }
                }
                Step::Done { finish, usage, .. } => {
                    let finish = if finish == Finish::Length { "length" } else { "stop" };
                    let usage = TurnUsage {
                        prompt_tokens: usage.prompt_tokens,
                        cached_tokens: usage.cached_tokens,
                        completion_tokens: usage.completion_tokens,
                    };
                    return Ok(Reply { text, usage, finish });
                }
                Step::Failed(error) => return Err(error),
            }
        }
        Err(ApiError::new(ErrorKind::Internal, "the generation ended without a result"))
    };
    tokio::time::timeout(limit, whole).await.unwrap_or_else(|_| {
        Err(ApiError::new(ErrorKind::Timeout, "the turn took longer than the request timeout and was not recorded")
            .with_code("request_timeout"))
    })
}

/// Asks every voting agent the question among `options` (concurrently), parses each answer into
/// a vote, and returns the answers and the decision. Answers enter each agent's own history, so
/// its next turn still extends its memory.
pub(crate) async fn decide(
    state: &AppState,
    slot: &Arc<Slot>,
    ns: &Namespace,
    options: Option<Vec<String>>,
    question: Option<String>,
) -> Result<Value, ApiError> {
    use semantic_coord::decision::{parse_answer, parse_ranking, Vote, VoteSource};
    use semantic_coord::DecisionMode;
    let _busy = slot.acquire()?;
    let (plans, settings, options, mode) = {
        let mut session = slot.lock();
        let options = options.unwrap_or_else(|| session.ballot.clone());
        if options.len() < 2 {
            return Err(ApiError::invalid("options", "a decision needs at least two options (here or at creation)"));
        }
        let mut probe = session.spec.clone();
        probe.options = options.clone();
        probe.validate().map_err(coord_error)?;
        session.ballot = options.clone();
        let mode = session.spec.decision_mode;
        let question = question.unwrap_or_else(|| "Which option do you choose?".into());
        let answer = if mode == DecisionMode::RankedChoice {
            "Answer with one line: \"Ranking: <best> > <next> > ...\"."
        } else {
            "Answer with one line: \"Choice: <option>\"."
        };
        let text = format!("[Decision] {} Options: {}. {answer}", question.trim(), options.join(", "));
        let voters = session.spec.voters();
        let plans: Vec<TurnPlan> = voters
            .iter()
            .filter_map(|id| session.agent_index(id).ok())
            .map(|i| {
                let mut plan = session.plan_question(i, &text);
                fit_reply_prefix(state, &mut plan);
                plan
            })
            .collect();
        (plans, session.spec.settings.clone(), options, mode)
    };
    let replies = futures_util::future::join_all(plans.iter().map(|p| generate(state, p, ns, &settings, None))).await;
    let mut answers = Vec::new();
    let mut session = slot.lock();
    for (plan, reply) in plans.into_iter().zip(replies) {
        let reply = reply?;
        let names: Vec<&str> =
            session.spec.agents.iter().map(|a| a.display_name.as_str()).filter(|n| *n != plan.agent_name).collect();
        let content = semantic_coord::clean::clean_response(&reply.text, &plan.agent_name, &names);
        let (choice, ranking) = if mode == DecisionMode::RankedChoice {
            let ranking = parse_ranking(&content, &options);
            (ranking.first().cloned(), ranking)
        } else {
            (parse_answer(&content, &options), Vec::new())
        };
        let agent_id = plan.agent_id.clone();
        session.commit_answer(plan, content.clone(), reply.usage, now_secs());
        let vote = Vote {
            agent_id: agent_id.clone(),
            choice: choice.clone(),
            ranking: ranking.clone(),
            source: VoteSource::Parsed,
        };
        let counted = (choice.is_some() || !ranking.is_empty()) && session.vote(&vote).is_ok();
        answers.push(json!({
            "agent_id": agent_id, "content": content, "choice": choice, "ranking": ranking,
            "counted": counted, "usage": crate::coord_wire::usage_json(&reply.usage),
        }));
    }
    let body = json!({"object": "coordination.decision", "session_id": session.id, "options": options,
        "answers": answers, "decision": session.decision()});
    state.coord.save(slot, session)?;
    Ok(body)
}
