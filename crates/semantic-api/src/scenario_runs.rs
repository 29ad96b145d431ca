//! Scenario runs (`/v1/scenarios/runs…`): a YAML scenario (the original system's format) run on
//! the server, phase by phase, as coordination sessions. Templates are resolved from earlier
//! phases, permanent agents keep their memory across phases (ephemeral ones are deleted when
//! their phase ends), `auto_rounds` rounds run per phase, a phase with a decision mode is
//! decided over the outcome's choices, and the outcome regex and payoff matrix are applied at the
//! end. Events are logged and replayed to every SSE subscriber; the transcript is JSON or
//! Markdown. `semantic scenario run` is a client of these routes. A run's record (request,
//! status, phases with their sessions, event log) is written after every logged event through the
//! coordination store (`{namespace}/runs/{id}.json`, checksummed, replaced atomically), and loaded
//! on first use after a restart: a run that was running then reads `interrupted`, and
//! `POST …/next` resumes it, finishing its cut phase in that phase's own session.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use semantic_coord::scenario::{self, Phase, Scenario, TranscriptLine};
use semantic_coord::{Lifecycle, MessageKind, Session, SessionStatus, SessionStore};
use semantic_scheduler::Namespace;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;

use crate::coord_wire::{message_json, AgentConfig, CreateSessionRequest, InteractionWire};
use crate::coordination::{coord_error, decide, run, Coordinator, Event, Run, Slot};
use crate::error::{ApiError, ErrorKind};
use crate::generation::{now_secs, random_id};
use crate::AppState;

/// Most runs kept (finished ones beyond this are forgotten, oldest first).
const KEPT_RUNS: usize = 64;
/// Most runs running at once per server.
const RUNNING_LIMIT: usize = 4;

/// `POST /v1/scenarios/runs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StartRunRequest {
    /// The scenario file's text (YAML).
    pub yaml: String,
    /// Rounds per phase (default: each phase's `auto_rounds`).
    pub rounds: Option<u32>,
    /// Most tokens per turn (default 200).
    pub max_tokens: Option<usize>,
    /// Temperature per turn (default 0.3).
    pub temperature: Option<f32>,
    /// Seed: the run replays exactly.
    pub seed: Option<u64>,
    /// Run one phase at a time: after every phase but the last the run is `paused` until
    /// `POST /v1/scenarios/runs/{id}/next` runs the next one (default false: every phase in a row).
    pub step: Option<bool>,
}

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Phases are running.
    Running,
    /// A step run finished a phase and waits for `POST …/next`.
    Paused,
    /// Every phase ran.
    Completed,
    /// A phase failed; `error` says why.
    Failed,
    /// Cancelled through `DELETE`.
    Cancelled,
    /// The server stopped while the run was running; `POST …/next` resumes it.
    Interrupted,
}

/// One phase of a run: the session that runs it, its decision, and whether it is done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PhaseRun {
    phase: String,
    session_id: String,
    decision: Option<Value>,
    complete: bool,
}

/// What is stored of a run; the rest (scenario, sessions, live channel) is rebuilt from it.
#[derive(Serialize, Deserialize)]
struct RunFile {
    id: String,
    namespace: String,
    request: StartRunRequest,
    status: RunStatus,
    error: Option<Value>,
    created_at: u64,
    phases: Vec<PhaseRun>,
    events: Vec<RunEvent>,
}

/// A logged run event: its name and JSON data.
pub(crate) type RunEvent = (String, Value);

/// One run: its scenario, progress, event log and transcript.
pub(crate) struct RunRecord {
    id: String,
    namespace: String,
    scenario: Scenario,
    /// The settings the run was started with (every phase uses them).
    request: StartRunRequest,
    status: RunStatus,
    error: Option<Value>,
    created_at: u64,
    /// The phases started, in order.
    phases: Vec<PhaseRun>,
    events: Vec<RunEvent>,
    live: broadcast::Sender<RunEvent>,
    sessions: HashMap<String, Arc<Slot>>,
    abort: Option<tokio::task::AbortHandle>,
    /// Where the record is written (None: in memory only).
    store: Option<SessionStore>,
}

impl RunRecord {
    /// Writes the record; a failure is logged (the run goes on, its record may be stale).
    fn save(&self) {
        let Some(store) = &self.store else { return };
        let file = RunFile {
            id: self.id.clone(),
            namespace: self.namespace.clone(),
            request: self.request.clone(),
            status: self.status,
            error: self.error.clone(),
            created_at: self.created_at,
            phases: self.phases.clone(),
            events: self.events.clone(),
        };
        if let Err(err) = store.save_run(&self.namespace, &self.id, &file) {
            tracing::error!(%err, run = %self.id, "writing a scenario run's record failed");
        }
    }

    /// A stored run, relinked to its sessions; one that was running is now interrupted.
    fn restore(file: RunFile, coord: &Coordinator, store: &SessionStore) -> Option<RunRecord> {
        let scenario = match scenario::parse(&file.request.yaml) {
            Ok(scenario) => scenario,
            Err(issues) => {
                tracing::warn!(run = %file.id, issues = issues.len(), "a stored scenario run no longer parses");
                return None;
            }
        };
        let sessions = file
            .phases
            .iter()
            .filter_map(|p| coord.slot(&file.namespace, &p.session_id).map(|slot| (p.phase.clone(), slot)))
            .collect();
        let mut record = RunRecord {
            id: file.id,
            namespace: file.namespace,
            scenario,
            request: file.request,
            status: file.status,
            error: file.error,
            created_at: file.created_at,
            phases: file.phases,
            events: file.events,
            live: broadcast::channel(256).0,
            sessions,
            abort: None,
            store: Some(store.clone()),
        };
        if record.status == RunStatus::Running {
            record.status = RunStatus::Interrupted;
            let body = status_json(&record);
            push(&mut record, "run_interrupted", body);
        }
        Some(record)
    }
}

/// Every run of the server: those stored are loaded on first use (the coordination store is
/// known then).
#[derive(Default)]
pub struct ScenarioRuns {
    runs: Mutex<Vec<Arc<Mutex<RunRecord>>>>,
    loaded: std::sync::OnceLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ScenarioRuns {
    /// The runs, the stored ones loaded first if this is the first use.
    fn all(&self, coord: &Coordinator) -> std::sync::MutexGuard<'_, Vec<Arc<Mutex<RunRecord>>>> {
        self.loaded.get_or_init(|| {
            let Some(store) = coord.store() else { return };
            let (files, problems) = store.load_runs::<RunFile>();
            for err in problems {
                tracing::warn!(%err, "a stored scenario run did not verify and was moved aside");
            }
            let mut restored: Vec<RunRecord> =
                files.into_iter().filter_map(|f| RunRecord::restore(f, coord, store)).collect();
            restored.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            if !restored.is_empty() {
                tracing::info!(runs = restored.len(), "scenario runs restored");
            }
            lock(&self.runs).extend(restored.into_iter().map(|r| Arc::new(Mutex::new(r))));
        });
        lock(&self.runs)
    }

    pub(crate) fn get(&self, coord: &Coordinator, ns: &Namespace, id: &str) -> Result<Arc<Mutex<RunRecord>>, ApiError> {
        self.all(coord)
            .iter()
            .find(|r| {
                let r = lock(r);
                r.id == id && r.namespace == ns.as_str()
            })
            .cloned()
            .ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("no scenario run {id:?}")).with_code("run_not_found")
            })
    }

    /// 429 `too_many_runs` (Retry-After) when [`RUNNING_LIMIT`] runs are running.
    fn check_capacity(&self, coord: &Coordinator) -> Result<(), ApiError> {
        Self::capacity(&self.all(coord))
    }

    fn capacity(runs: &[Arc<Mutex<RunRecord>>]) -> Result<(), ApiError> {
        let running = runs.iter().filter(|r| lock(r).status == RunStatus::Running).count();
        if running >= RUNNING_LIMIT {
            return Err(ApiError {
                retry_after: Some(30),
                ..ApiError::new(ErrorKind::RateLimited, format!("{RUNNING_LIMIT} scenario runs are already running"))
                    .with_code("too_many_runs")
            });
        }
        Ok(())
    }

    fn add(&self, coord: &Coordinator, record: RunRecord) -> Result<Arc<Mutex<RunRecord>>, ApiError> {
        let mut runs = self.all(coord);
        Self::capacity(&runs)?;
        while runs.len() >= KEPT_RUNS {
            let ended = runs.iter().position(|r| !matches!(lock(r).status, RunStatus::Running | RunStatus::Paused));
            match ended.or_else(|| runs.iter().position(|r| lock(r).status == RunStatus::Paused)) {
                Some(i) => {
                    let gone = runs.remove(i);
                    let gone = lock(&gone);
                    if let Some(Err(err)) = gone.store.as_ref().map(|s| s.delete_run(&gone.namespace, &gone.id)) {
                        tracing::warn!(%err, run = %gone.id, "deleting a forgotten scenario run's record failed");
                    }
                }
                None => break,
            }
        }
        record.save();
        let record = Arc::new(Mutex::new(record));
        runs.push(Arc::clone(&record));
        Ok(record)
    }
}

fn log(record: &Mutex<RunRecord>, name: &str, data: Value) {
    push(&mut lock(record), name, data);
}

/// Logs an event, writes the record and sends the event live, under the caller's lock (so a
/// status change and the event that announces it are seen, and stored, together).
fn push(r: &mut RunRecord, name: &str, data: Value) {
    r.events.push((name.to_owned(), data.clone()));
    r.save();
    let _ = r.live.send((name.to_owned(), data));
}

/// Parses the YAML (400 listing every issue with its line) and starts the run.
pub(crate) fn start(state: &AppState, ns: &Namespace, req: StartRunRequest) -> Result<Value, ApiError> {
    let scenario = scenario::parse(&req.yaml).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        ApiError::invalid("yaml", format!("the scenario is invalid: {}", lines.join("; ")))
            .with_code("invalid_scenario")
    })?;
    if req.rounds.is_some_and(|r| r == 0 || r > 50) {
        return Err(ApiError::invalid("rounds", "1 to 50"));
    }
    let (live, _) = broadcast::channel(256);
    let id = random_id("run_");
    let record = state.runs.add(
        &state.coord,
        RunRecord {
            id: id.clone(),
            namespace: ns.as_str().to_owned(),
            scenario: scenario.clone(),
            request: req,
            status: RunStatus::Running,
            error: None,
            created_at: now_secs(),
            phases: Vec::new(),
            events: Vec::new(),
            live,
            sessions: HashMap::new(),
            abort: None,
            store: state.coord.store().cloned(),
        },
    )?;
    let body = status_json(&lock(&record));
    spawn_phases(state, ns, &record);
    Ok(body)
}

/// Runs the next phase of a paused step run, or resumes an interrupted run (409
/// `run_not_paused` otherwise).
pub(crate) fn next(state: &AppState, ns: &Namespace, record: &Arc<Mutex<RunRecord>>) -> Result<Value, ApiError> {
    state.runs.check_capacity(&state.coord)?;
    let body = {
        let mut r = lock(record);
        if !matches!(r.status, RunStatus::Paused | RunStatus::Interrupted) {
            let status = serde_json::to_value(r.status).unwrap_or_default();
            return Err(ApiError::new(ErrorKind::Conflict, format!("the run is {status}, not paused"))
                .with_code("run_not_paused"));
        }
        r.status = RunStatus::Running;
        let body = status_json(&r);
        push(&mut r, "run_resumed", body.clone());
        body
    };
    spawn_phases(state, ns, record);
    Ok(body)
}

/// Runs the record's remaining phases (one, for a step run) in a task; its end is logged with the
/// status change: `run_complete`, `run_paused` or `error`.
fn spawn_phases(state: &AppState, ns: &Namespace, record: &Arc<Mutex<RunRecord>>) {
    let task_state = state.clone();
    let task_ns = ns.clone();
    let task_record = Arc::clone(record);
    let task = tokio::spawn(async move {
        let outcome = run_phases(&task_state, &task_ns, &task_record).await;
        let mut r = lock(&task_record);
        let (name, data) = match outcome {
            Ok(true) => {
                r.status = RunStatus::Paused;
                ("run_paused", status_json(&r))
            }
            Ok(false) => {
                r.status = RunStatus::Completed;
                ("run_complete", status_json(&r))
            }
            Err(error) => {
                r.status = RunStatus::Failed;
                r.error = Some(error.body());
                ("error", error.body())
            }
        };
        push(&mut r, name, data);
    });
    lock(record).abort = Some(task.abort_handle());
}

/// Cancels a running run (the turn in progress is dropped, not recorded).
pub(crate) fn cancel(record: &Mutex<RunRecord>) -> Value {
    let mut r = lock(record);
    if matches!(r.status, RunStatus::Running | RunStatus::Paused | RunStatus::Interrupted) {
        if let Some(abort) = r.abort.take() {
            abort.abort();
        }
        r.status = RunStatus::Cancelled;
        let data = status_json(&r);
        push(&mut r, "error", json!({"error": {"message": "the run was cancelled", "code": "cancelled"}}));
        return data;
    }
    status_json(&r)
}

/// Runs the phases not run yet, in order; a step run stops after one. Returns whether phases are
/// left (the run pauses).
async fn run_phases(state: &AppState, ns: &Namespace, record: &Arc<Mutex<RunRecord>>) -> Result<bool, ApiError> {
    let (scenario, req, done) = {
        let r = lock(record);
        (r.scenario.clone(), r.request.clone(), r.phases.iter().filter(|p| p.complete).count())
    };
    for (i, phase) in scenario.phases.iter().enumerate().skip(done) {
        run_phase(state, ns, record, &req, &scenario, phase).await?;
        let left = i + 1 < scenario.phases.len();
        if left && req.step == Some(true) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One phase: its session is created and recorded (or, for a phase cut by a restart, taken up
/// again), its rounds run (events forwarded to the run's log), the scenario's outcome decided if
/// it has one, and its ephemeral agents cleared.
async fn run_phase(
    state: &AppState,
    ns: &Namespace,
    record: &Arc<Mutex<RunRecord>>,
    req: &StartRunRequest,
    scenario: &Scenario,
    phase: &Phase,
) -> Result<(), ApiError> {
    let started = lock(record).sessions.get(&phase.name).cloned();
    let slot = match started {
        Some(slot) => slot,
        None => open_phase(state, ns, record, req, scenario, phase)?,
    };
    let session_id = slot.lock().id.clone();
    let (speakers, done) = {
        let s = slot.lock();
        (s.speakers().len(), s.turns_done as usize)
    };
    let turns = (speakers * req.rounds.unwrap_or(phase.auto_rounds) as usize).saturating_sub(done);
    if turns > 0 {
        run_rounds(state, ns, record, &slot, &phase.name, turns).await?;
    }
    let decision = match (&scenario.outcome, phase.decision_mode) {
        (_, semantic_coord::DecisionMode::None) => None,
        (Some(outcome), _) if outcome.choices.len() >= 2 => {
            Some(decide(state, &slot, ns, Some(outcome.choices.clone()), None).await?)
        }
        _ => None,
    };
    if let Some(d) = &decision {
        log(record, "decision", json!({"phase": phase.name, "decision": d["decision"]}));
    }
    clear_ephemeral(state, ns, &slot).await?;
    {
        let mut r = lock(record);
        if let Some(p) = r.phases.iter_mut().find(|p| p.phase == phase.name) {
            p.decision = decision.map(|d| d["decision"].clone());
            p.complete = true;
        }
    }
    log(record, "phase_complete", json!({"phase": phase.name, "session_id": session_id}));
    Ok(())
}

/// Creates a phase's session and records it in the run.
fn open_phase(
    state: &AppState,
    ns: &Namespace,
    record: &Arc<Mutex<RunRecord>>,
    req: &StartRunRequest,
    scenario: &Scenario,
    phase: &Phase,
) -> Result<Arc<Slot>, ApiError> {
    let create = session_request(scenario, phase, record, req)?;
    let spec = create.into_spec().map_err(coord_error)?;
    let ns_str = ns.as_str().to_owned();
    let coord = &state.coord;
    let lookup = |memory_id: &str| coord.history(&ns_str, memory_id);
    let session = Session::new(random_id("sess_"), ns_str.clone(), spec, now_secs(), &lookup).map_err(coord_error)?;
    let session_id = session.id.clone();
    let slot = state.coord.insert(session)?;
    {
        let mut r = lock(record);
        r.sessions.insert(phase.name.clone(), Arc::clone(&slot));
        // A cut phase whose session is gone starts again in this one.
        r.phases.retain(|p| p.phase != phase.name);
        let phase_run =
            PhaseRun { phase: phase.name.clone(), session_id: session_id.clone(), decision: None, complete: false };
        r.phases.push(phase_run);
    }
    log(
        record,
        "phase_start",
        json!({"phase": phase.name, "label": phase.label, "session_id": session_id, "agents": phase.agents}),
    );
    Ok(slot)
}

/// Runs `turns` turns of a phase's session (none if it already finished), forwarding every event
/// but tokens to the run's log, tagged with the phase.
async fn run_rounds(
    state: &AppState,
    ns: &Namespace,
    record: &Arc<Mutex<RunRecord>>,
    slot: &Arc<Slot>,
    phase: &str,
    turns: usize,
) -> Result<(), ApiError> {
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let forward = async {
        while let Some((name, data)) = rx.recv().await {
            if name != "token" {
                let mut data = data;
                data["phase"] = json!(phase);
                log(record, name, data);
            }
        }
    };
    let running = async {
        let result = if slot.lock().status() == SessionStatus::Finished {
            Ok(Vec::new())
        } else {
            run(state, slot, ns, Run::Round(Some(turns)), Some(&tx)).await
        };
        drop(tx);
        result
    };
    let (result, ()) = tokio::join!(running, forward);
    result.map(drop)
}

/// Ephemeral agents are cleared between phases: their memory is deleted.
async fn clear_ephemeral(state: &AppState, ns: &Namespace, slot: &Arc<Slot>) -> Result<(), ApiError> {
    let ephemeral: Vec<String> = {
        let s = slot.lock();
        s.spec
            .agents
            .iter()
            .zip(&s.views)
            .filter(|(a, _)| a.lifecycle == Lifecycle::Ephemeral)
            .map(|(_, v)| v.memory_id.clone())
            .collect()
    };
    for memory_id in ephemeral {
        crate::coord_routes::delete_memory(state, ns, &memory_id).await?;
    }
    Ok(())
}

/// The coordination session of one phase: agents keyed by their scenario keys, templates
/// resolved from the phases already run, permanent memory under the scenario id.
fn session_request(
    scenario: &Scenario,
    phase: &Phase,
    record: &Mutex<RunRecord>,
    req: &StartRunRequest,
) -> Result<CreateSessionRequest, ApiError> {
    let lines = |phase_name: &str, agent: &str| -> Option<Vec<TranscriptLine>> {
        let slot = lock(record).sessions.get(phase_name).cloned()?;
        let s = slot.lock();
        let view = s.transcript(Some(agent)).ok()?;
        let key_of = |id: &Option<String>| id.clone();
        Some(
            view.into_iter()
                .filter(|m| matches!(m.kind, MessageKind::Turn | MessageKind::Whisper | MessageKind::System))
                .map(|m| TranscriptLine {
                    agent_key: if m.kind == MessageKind::System { None } else { key_of(&m.sender_id) },
                    display_name: m.sender_name.clone(),
                    content: m.content.clone(),
                })
                .collect(),
        )
    };
    let mut initial = phase.initial_prompt.trim().to_owned();
    if !phase.initial_prompt_template.trim().is_empty() {
        let resolved = scenario::resolve_template(&phase.initial_prompt_template, None, &lines);
        if !initial.is_empty() {
            initial.push_str("\n\n");
        }
        initial.push_str(resolved.trim());
    }
    let mut per_agent = BTreeMap::new();
    for (key, template) in &phase.per_agent_prompt_templates {
        per_agent.insert(key.clone(), scenario::resolve_template(template, Some(key), &lines).trim().to_owned());
    }
    let agents = phase
        .agents
        .iter()
        .map(|key| {
            let a = scenario.agent(key).ok_or_else(|| ApiError::invalid("yaml", format!("unknown agent {key:?}")))?;
            Ok(AgentConfig {
                agent_id: Some(key.clone()),
                display_name: a.display_name.clone(),
                role: Some(a.role.as_str().to_owned()),
                system_prompt: Some(a.system_prompt.clone()),
                lifecycle: Some(a.lifecycle),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(CreateSessionRequest {
        topology: Some(phase.topology),
        debate_format: Some(phase.debate_format),
        decision_mode: Some(phase.decision_mode),
        agents,
        initial_prompt: Some(initial),
        per_agent_prompts: Some(per_agent),
        max_turns: Some(phase.max_turns),
        persistent_cache_prefix: Some(scenario.id.clone()),
        prior_agent_messages: None,
        interactions: phase.interactions.as_ref().map(|edges| {
            edges
                .iter()
                .map(|e| InteractionWire {
                    from_agent: e.from_agent.clone(),
                    to_agent: e.to_agent.clone(),
                    channel: Some(e.channel),
                })
                .collect()
        }),
        options: scenario.outcome.as_ref().map(|o| o.choices.clone()).filter(|c| c.len() >= 2),
        temperature: req.temperature,
        top_p: None,
        top_k: None,
        max_tokens: req.max_tokens,
        repetition_penalty: None,
        seed: req.seed,
    })
}

/// A run's status.
pub(crate) fn status_json(r: &RunRecord) -> Value {
    let turns: u64 = r.sessions.values().map(|s| s.lock().turns_done).sum();
    json!({
        "object": "scenario.run",
        "run_id": r.id,
        "scenario": {"id": r.scenario.id, "title": r.scenario.title},
        "status": r.status,
        "phases": r.phases.iter()
            .map(|p| json!({"phase": p.phase, "session_id": p.session_id, "complete": p.complete}))
            .collect::<Vec<_>>(),
        "phases_total": r.scenario.phases.len(),
        "turns_done": turns,
        "error": r.error,
        "created_at": r.created_at,
    })
}

/// The transcript: every phase's messages and turns, decisions, the outcome per agent and the
/// payoff, and what agent memory saved (tokens prefilled against re-prefilling every prompt).
pub(crate) fn transcript_json(r: &RunRecord) -> Value {
    let mut phases = Vec::new();
    let mut per_agent: BTreeMap<String, [u64; 5]> = BTreeMap::new(); // turns, prompt, cached, reuse_ok, reuse_checked
    let mut last_texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for PhaseRun { phase: name, session_id, decision, .. } in &r.phases {
        let Some(slot) = r.sessions.get(name) else { continue };
        let s = slot.lock();
        for t in &s.turn_log {
            let e = per_agent.entry(t.agent_id.clone()).or_default();
            e[0] += 1;
            e[1] += t.usage.prompt_tokens as u64;
            e[2] += t.usage.cached_tokens as u64;
            if let Some(prev) = t.previous_prompt_tokens {
                e[4] += 1;
                if t.usage.cached_tokens >= prev {
                    e[3] += 1;
                }
            }
            last_texts.entry(t.agent_id.clone()).or_default().push(t.content.clone());
        }
        phases.push(json!({
            "phase": name,
            "label": r.scenario.phase(name).map(|p| p.label.clone()),
            "session_id": session_id,
            "messages": s.messages.iter().filter(|m| m.kind != MessageKind::Private).map(message_json).collect::<Vec<_>>(),
            "turns": s.turn_log.iter().map(|t| crate::coord_wire::turn_json(&s, t)).collect::<Vec<_>>(),
            "decision": decision,
        }));
    }
    let outcome = r.scenario.outcome.as_ref().map(|o| {
        let choices: BTreeMap<String, Option<String>> = r
            .scenario
            .agents
            .iter()
            .filter(|(key, _)| last_texts.contains_key(key))
            .map(|(key, _)| {
                let texts = &last_texts[key];
                (key.clone(), texts.iter().rev().find_map(|t| scenario::parse_choice(o, t)))
            })
            .collect();
        let payoff = r.scenario.payoff.as_ref().and_then(|p| {
            let players: Vec<(&String, &String)> =
                choices.iter().filter_map(|(k, c)| c.as_ref().map(|c| (k, c))).take(2).collect();
            let [(row, rc), (col, cc)] = players[..] else { return None };
            scenario::payoff_cell(p, rc, cc).map(|cell| json!({"row": row, "column": col, "cell": cell}))
        });
        json!({"type": o.kind, "choices": choices, "payoff": payoff})
    });
    let memory: Vec<Value> = per_agent
        .iter()
        .map(|(key, [turns, prompt, cached, ok, checked])| {
            let lifecycle = r.scenario.agent(key).map(|a| a.lifecycle).unwrap_or_default();
            json!({"agent": key, "lifecycle": lifecycle, "turns": turns, "prompt_tokens": prompt, "cached_tokens": cached,
                "prefilled_tokens": prompt - cached.min(prompt), "turns_reusing_previous_prompt": ok, "turns_after_first": checked})
        })
        .collect();
    let prompt: u64 = per_agent.values().map(|v| v[1]).sum();
    let cached: u64 = per_agent.values().map(|v| v[2]).sum();
    json!({
        "object": "scenario.transcript",
        "run_id": r.id,
        "status": r.status,
        "scenario": {"id": r.scenario.id, "title": r.scenario.title, "description": r.scenario.description},
        "phases": phases,
        "phases_total": r.scenario.phases.len(),
        "outcome": outcome,
        "payoff": r.scenario.payoff,
        "memory": {"agents": memory, "naive_prefill_tokens": prompt, "cached_tokens": cached, "prefilled_tokens": prompt - cached.min(prompt)},
    })
}

/// The transcript as Markdown.
pub(crate) fn transcript_markdown(t: &Value) -> String {
    let mut out = format!("# {}\n\n", t["scenario"]["title"].as_str().unwrap_or(""));
    if let Some(d) = t["scenario"]["description"].as_str().filter(|d| !d.is_empty()) {
        out.push_str(&format!("{d}\n\n"));
    }
    out.push_str(&format!("Run `{}`: {}.\n\n", t["run_id"].as_str().unwrap_or(""), t["status"].as_str().unwrap_or("")));
    for phase in t["phases"].as_array().into_iter().flatten() {
        out.push_str(&format!("## {}\n\n", phase["label"].as_str().or(phase["phase"].as_str()).unwrap_or("")));
        for m in phase["messages"].as_array().into_iter().flatten() {
            let who = m["sender_name"].as_str().unwrap_or("");
            let content = m["content"].as_str().unwrap_or("").replace('\n', "\n> ");
            let tag = match (m["kind"].as_str(), m["visible_to"].as_array()) {
                (Some("whisper"), Some(to)) => format!(
                    " (whisper to {})",
                    to.iter().skip(1).filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
                ),
                (Some("decision"), _) => " (decision answer)".into(),
                (_, Some(to)) => {
                    format!(" (to {})", to.iter().skip(1).filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                }
                _ => String::new(),
            };
            out.push_str(&format!("**{who}**{tag}:\n> {content}\n\n"));
        }
        if let Some(d) = phase["decision"].as_object() {
            out.push_str(&format!("Decision: {}\n\n", d.get("explanation").and_then(Value::as_str).unwrap_or("")));
        }
    }
    if let Some(o) = t["outcome"].as_object() {
        out.push_str("## Outcome\n\n| agent | choice |\n|---|---|\n");
        for (agent, choice) in o["choices"].as_object().into_iter().flatten() {
            out.push_str(&format!("| {agent} | {} |\n", choice.as_str().unwrap_or("(none)")));
        }
        if let Some(p) = o["payoff"].as_object() {
            out.push_str(&format!(
                "\nPayoff ({} × {}): **{}**\n",
                p["row"].as_str().unwrap_or(""),
                p["column"].as_str().unwrap_or(""),
                p["cell"].as_str().unwrap_or("")
            ));
        }
        out.push('\n');
    }
    out.push_str("## Agent memory\n\n| agent | lifecycle | turns | prompt tokens | reused | prefilled | turns reusing their previous prompt |\n|---|---|---:|---:|---:|---:|---:|\n");
    for a in t["memory"]["agents"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} of {} |\n",
            a["agent"].as_str().unwrap_or(""),
            a["lifecycle"].as_str().unwrap_or(""),
            a["turns"],
            a["prompt_tokens"],
            a["cached_tokens"],
            a["prefilled_tokens"],
            a["turns_reusing_previous_prompt"],
            a["turns_after_first"]
        ));
    }
    out.push_str(&format!(
        "\nPrefilled {} tokens where re-prefilling every prompt would have cost {}.\n",
        t["memory"]["prefilled_tokens"], t["memory"]["naive_prefill_tokens"]
    ));
    out
}

/// A snapshot of the event log and a live receiver, taken together so no event is missed.
pub(crate) fn subscribe(record: &Mutex<RunRecord>) -> (Vec<RunEvent>, broadcast::Receiver<RunEvent>, bool) {
    let r = lock(record);
    (r.events.clone(), r.live.subscribe(), r.status != RunStatus::Running)
}

/// Locked access for the routes.
pub(crate) fn with<T>(record: &Mutex<RunRecord>, f: impl FnOnce(&RunRecord) -> T) -> T {
    f(&lock(record))
}
