//! FakeEngine tests of the step loop: batching, admission, cancellation, failures and agent memory.

use super::*;
use crate::{Event, GenerateRequest};
use semantic_engine::{FakeEngine, SamplingParams, TokenId};
use tokio::sync::mpsc::UnboundedReceiver;

fn state(n_ctx: u32, budget: usize, max_running: usize) -> State<FakeEngine> {
    let config = SchedulerConfig { max_running, step_token_budget: budget, queue_capacity: 64, ..Default::default() };
    State::new(FakeEngine::new(n_ctx, 512, 8), config, Arc::default())
}

fn submit(state: &mut State<FakeEngine>, prompt_len: usize, max_tokens: usize) -> UnboundedReceiver<Event> {
    let prompt: Vec<TokenId> = (0..prompt_len).map(|i| 97 + (i % 26) as TokenId).collect();
    let request = GenerateRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        agent: Default::default(),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    state.shared.queued.fetch_add(1, Ordering::Relaxed);
    state.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
    rx
}

/// Per step: tokens per sequence id, in row order.
fn batches(state: &State<FakeEngine>) -> Vec<Vec<(SeqId, usize)>> {
    state.engine().control().lock().unwrap().batches.clone()
}

fn drain_events(rx: &mut UnboundedReceiver<Event>) -> (String, Option<FinishReason>) {
    let (text, reason, _) = drain_all(rx);
    (text, reason)
}

fn drain_all(rx: &mut UnboundedReceiver<Event>) -> (String, Option<FinishReason>, Option<crate::Usage>) {
    let mut text = String::new();
    let mut reason = None;
    let mut usage = None;
    let mut admitted = None;
    while let Ok(event) = rx.try_recv() {
        match event {
            Event::Delta { text: t, .. } => {
                assert!(admitted.is_some(), "a delta before the Admitted event");
                text.push_str(&t);
            }
            Event::Done { reason: r, usage: u, .. } => {
                // Every placed request announced exactly the reuse its usage reports.
                if let Some((cached, source)) = admitted {
                    assert_eq!((cached, source), (u.cached_tokens, u.cache_source), "Admitted vs usage");
                }
                reason = Some(r);
                usage = Some(u);
            }
            Event::Admitted { cached_tokens, source } => {
                assert!(admitted.is_none(), "two Admitted events");
                admitted = Some((cached_tokens, source));
            }
        }
    }
    (text, reason, usage)
}

fn ask(
    state: &mut State<FakeEngine>,
    namespace: &str,
    agent: Option<&str>,
    prompt: &[TokenId],
    max_tokens: usize,
) -> (String, crate::Usage) {
    let agent = crate::AgentRef {
        namespace: crate::Namespace::parse(namespace).unwrap(),
        agent: agent.map(|a| crate::AgentId::parse(a).unwrap()),
    };
    let request = GenerateRequest {
        prompt: prompt.to_vec(),
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        agent,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    state.shared.queued.fetch_add(1, Ordering::Relaxed);
    state.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
    run_to_idle(state);
    let (text, reason, usage) = drain_all(&mut rx);
    assert!(matches!(reason, Some(FinishReason::Length | FinishReason::Stop)), "{reason:?}");
    (text, usage.unwrap())
}

fn bytes(text: &str) -> Vec<TokenId> {
    text.bytes().map(TokenId::from).collect()
}

fn memory_state(n_seq_max: u32, max_running: usize, dir: Option<std::path::PathBuf>) -> State<FakeEngine> {
    let config = SchedulerConfig {
        max_running,
        step_token_budget: 64,
        queue_capacity: 64,
        memory: crate::MemoryConfig { dir, warm_bytes: 1 << 20, disk_bytes: 1 << 30, ..Default::default() },
    };
    State::new(FakeEngine::new(4096, 512, n_seq_max), config, Arc::default())
}

fn run_to_idle(state: &mut State<FakeEngine>) {
    for _ in 0..10_000 {
        if state.is_idle() {
            return;
        }
        state.step();
    }
    panic!("scheduler did not go idle");
}

#[test]
fn long_prompt_is_chunked_between_decode_steps() {
    let mut s = state(4096, 64, 8);
    let mut short = submit(&mut s, 8, 40);
    s.step(); // prefill of the short one; it now decodes.
    let _long = submit(&mut s, 300, 4);
    for _ in 0..6 {
        s.step();
    }
    let steps = batches(&s);
    // Every step after the first carries the decoder's one token first, then at most 63 prefill tokens.
    let chunks: Vec<usize> = steps[1..6].iter().map(|step| step[1].1).collect();
    assert_eq!(chunks, vec![63, 63, 63, 63, 48], "{steps:?}");
    for step in &steps[1..6] {
        assert_eq!(step[0], (0, 1), "{steps:?}");
    }
    assert!(drain_events(&mut short).0.len() >= 5);
}

#[test]
fn short_request_gets_its_first_token_during_a_long_prefill() {
    let mut s = state(8192, 32, 8);
    let _long = submit(&mut s, 2000, 2);
    s.step();
    let mut short = submit(&mut s, 5, 1);
    s.step();
    let (text, reason) = drain_events(&mut short);
    assert_eq!(reason, Some(FinishReason::Length));
    assert_eq!(text.len(), 1);
    // The long prompt is far from done: it got at most 2 steps of 32 tokens.
    assert!(batches(&s).iter().flatten().any(|(seq, _)| *seq == 0));
    assert!(batches(&s).iter().flatten().filter(|(seq, _)| *seq == 0).map(|(_, n)| n).sum::<usize>() < 64);
}

#[test]
fn concurrent_requests_produce_what_each_produces_alone() {
    let mut alone = Vec::new();
    for len in [5, 17, 40] {
        let mut s = state(4096, 512, 8);
        let mut rx = submit(&mut s, len, 12);
        run_to_idle(&mut s);
        alone.push(drain_events(&mut rx).0);
    }
    let mut s = state(4096, 16, 8);
    let mut rxs: Vec<_> = [5, 17, 40].into_iter().map(|len| submit(&mut s, len, 12)).collect();
    run_to_idle(&mut s);
    let together: Vec<String> = rxs.iter_mut().map(|rx| drain_events(rx).0).collect();
    assert_eq!(together, alone);
}

#[test]
fn abandoned_request_frees_its_sequence_at_the_next_step() {
    let mut s = state(4096, 64, 8);
    let rx = submit(&mut s, 10, 1000);
    s.step();
    s.step();
    assert_eq!(s.engine().kv_len(0), 11);
    drop(rx);
    s.step();
    assert!(s.is_idle());
    assert_eq!(s.engine().kv_len(0), 0);
    assert_eq!(s.reserved, 0);
    assert_eq!(s.free_seqs.len(), 8);
}

#[test]
fn each_request_has_a_kv_stream_of_its_own() {
    // 100 cells per sequence: two requests of 70 run side by side (a shared cache of 100 would
    // have made the second wait).
    let mut s = state(100, 64, 8);
    let mut a = submit(&mut s, 40, 30);
    let mut b = submit(&mut s, 40, 30);
    s.step();
    assert_eq!(s.running.len(), 2);
    run_to_idle(&mut s);
    assert_eq!(drain_events(&mut a).1, Some(FinishReason::Length));
    assert_eq!(drain_events(&mut b).1, Some(FinishReason::Length));
}

#[test]
fn batch_rows_are_in_sequence_id_order() {
    // llama.cpp runs only consecutive sequence ids in one forward pass: decode tokens and
    // prefill chunks are ordered by sequence id, each sequence's rows together.
    let mut s = state(4096, 64, 8);
    let _a = submit(&mut s, 5, 30);
    s.step();
    let _b = submit(&mut s, 100, 30);
    let _c = submit(&mut s, 7, 30);
    for _ in 0..6 {
        s.step();
    }
    let steps = batches(&s);
    assert!(steps.iter().any(|step| step.len() == 3), "{steps:?}");
    for step in &steps {
        assert!(step.windows(2).all(|w| w[0].0 < w[1].0), "{steps:?}");
    }
}

#[test]
fn requests_arriving_together_compute_their_shared_prefix_once() {
    let shared = bytes(&"the same instructions and the same document. ".repeat(5));
    let prompts: Vec<Vec<TokenId>> = (0..4)
        .map(|i| {
            let mut p = shared.clone();
            p.extend(bytes(&format!("agent {i} asks its own question")));
            p
        })
        .collect();
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let mut s = memory_state(8, 4, None);
            ask(&mut s, "team", None, p, 6).0
        })
        .collect();
    let mut s = memory_state(8, 4, None);
    let mut rxs = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let request = GenerateRequest {
            prompt: p.clone(),
            max_tokens: 6,
            sampling: SamplingParams::greedy(),
            stop: vec![],
            agent: crate::AgentRef {
                namespace: crate::Namespace::parse("team").unwrap(),
                agent: Some(crate::AgentId::parse(&format!("a{i}")).unwrap()),
            },
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        s.shared.queued.fetch_add(1, Ordering::Relaxed);
        s.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
        rxs.push(rx);
    }
    run_to_idle(&mut s);
    let results: Vec<_> = rxs.iter_mut().map(drain_all).collect();
    let together: Vec<String> = results.iter().map(|r| r.0.clone()).collect();
    assert_eq!(together, alone);
    let usages: Vec<_> = results.iter().map(|r| r.2.unwrap()).collect();
    assert_eq!((usages[0].cached_tokens, usages[0].cache_source), (0, None));
    for u in &usages[1..] {
        assert_eq!(
            (u.cached_tokens, u.cache_source),
            (shared.len() + "agent ".len(), Some(crate::CacheSource::SharedPrefix))
        );
    }
    // Prompt tokens computed: the shared part once, then each agent's own part.
    let prompt_len: usize = prompts.iter().map(Vec::len).sum();
    let decoded: usize = batches(&s).iter().flatten().map(|(_, n)| n).sum();
    let generated = 4 * 5; // the sixth token of each reply is sampled, never decoded
    assert_eq!(decoded - generated, prompt_len - 3 * usages[1].cached_tokens);
    // The first agent's prefill stopped at the shared prefix, so the others started right there.
    let last_chunk = usages[1].cached_tokens % 64;
    assert!(last_chunk > 0 && batches(&s).contains(&vec![(0, last_chunk)]), "{:?}", batches(&s));
}

#[test]
fn failed_decode_fails_only_its_batch_and_the_loop_goes_on() {
    let mut s = state(4096, 64, 8);
    let mut a = submit(&mut s, 10, 5);
    s.engine().control().lock().unwrap().fail_decodes = 1;
    s.step();
    assert!(matches!(drain_events(&mut a).1, Some(FinishReason::Error(_))));
    let mut b = submit(&mut s, 10, 5);
    run_to_idle(&mut s);
    assert_eq!(drain_events(&mut b).1, Some(FinishReason::Length));
    assert_eq!(s.free_seqs.len(), 8);
}

#[test]
fn panicking_step_fails_its_requests_with_an_internal_error() {
    let mut s = state(4096, 64, 8);
    let mut a = submit(&mut s, 10, 5);
    s.engine().control().lock().unwrap().panic_next_decode = true;
    s.step();
    assert_eq!(drain_events(&mut a).1, Some(FinishReason::Error("internal error in the engine step".into())));
    let mut b = submit(&mut s, 10, 5);
    run_to_idle(&mut s);
    assert_eq!(drain_events(&mut b).1, Some(FinishReason::Length));
}

#[test]
fn stop_string_is_withheld_and_ends_the_stream() {
    let mut s = state(4096, 64, 8);
    // Learn what the fake says for this prompt, then stop on a piece of it.
    let mut probe = submit(&mut s, 10, 30);
    run_to_idle(&mut s);
    let full = drain_events(&mut probe).0;
    let stop = full[8..11].to_string();
    let cut = full.find(&stop).unwrap();
    let prompt: Vec<TokenId> = (0..10).map(|i| 97 + i).collect();
    let request = GenerateRequest {
        prompt,
        max_tokens: 30,
        sampling: SamplingParams::greedy(),
        stop: vec![stop],
        agent: Default::default(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    s.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
    run_to_idle(&mut s);
    let (text, reason) = drain_events(&mut rx);
    assert_eq!(text, full[..cut]);
    assert_eq!(reason, Some(FinishReason::StopString(0)));
}

#[test]
fn named_agent_reuses_prompt_and_reply_on_its_next_turn() {
    let mut s = memory_state(8, 2, None);
    let turn1 = bytes("system: be brief. user: hello");
    let (reply, usage) = ask(&mut s, "default", Some("alice"), &turn1, 6);
    assert_eq!((usage.cached_tokens, usage.cache_source), (0, None));
    // Turn 2 = turn 1 + the reply + new text; everything but the last reply token (never decoded) is reused.
    let mut turn2 = turn1.clone();
    turn2.extend(bytes(&reply));
    turn2.extend(bytes(" user: more"));
    let (warm_reply, usage) = ask(&mut s, "default", Some("alice"), &turn2, 6);
    assert_eq!(usage.cached_tokens, turn1.len() + 5);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::Hot));
    // Reuse never changes the answer: a fresh server gives the same reply cold.
    let mut cold = memory_state(8, 2, None);
    assert_eq!(ask(&mut cold, "default", None, &turn2, 6).0, warm_reply);
    // An identical re-send computes exactly one token.
    let (_, usage) = ask(&mut s, "default", Some("alice"), &turn2, 3);
    assert_eq!(usage.cached_tokens, turn2.len() - 1);
}

#[test]
fn anonymous_requests_share_prefixes_but_never_store_and_namespaces_never_leak() {
    let mut s = memory_state(8, 2, None);
    let system = bytes("a long shared system prompt, then: ");
    let mut p1 = system.clone();
    p1.extend(bytes("question one"));
    ask(&mut s, "team", Some("bob"), &p1, 4);
    let mut p2 = system.clone();
    p2.extend(bytes("question two"));
    let (_, usage) = ask(&mut s, "team", None, &p2, 4);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::SharedPrefix));
    assert_eq!(usage.cached_tokens, system.len() + "question ".len());
    assert_eq!(s.agents.memory().list(&crate::Namespace::parse("team").unwrap()).len(), 1);
    // Same agent id, other namespace: nothing is reused.
    let (_, usage) = ask(&mut s, "other", Some("bob"), &p1, 4);
    assert_eq!((usage.cached_tokens, usage.cache_source), (0, None));
    assert_eq!(s.agents.memory().list(&crate::Namespace::parse("other").unwrap()).len(), 1);
}

#[test]
fn a_shared_prefix_is_copied_only_from_an_owner_still_live_after_making_room() {
    // The owner of a shared prefix is kept while room is made, unless it is the only agent that
    // can make room: then it goes warm and the prompt is computed (never copied from a stream
    // that no longer holds it).
    for (sequences, shared) in [(1, false), (2, true)] {
        let question = "question one";
        let mut s = memory_state(sequences, 1, None);
        let system = bytes("a long shared system prompt, then: ");
        let mut p1 = system.clone();
        p1.extend(bytes(question));
        ask(&mut s, "team", Some("bob"), &p1, 4);
        let mut p2 = system.clone();
        p2.extend(bytes("question two"));
        let (answer, usage) = ask(&mut s, "team", None, &p2, 4);
        let expected = if shared { Some(crate::CacheSource::SharedPrefix) } else { None };
        assert_eq!(usage.cache_source, expected, "{sequences} sequences");
        let mut cold = memory_state(8, 2, None);
        assert_eq!(ask(&mut cold, "team", None, &p2, 4).0, answer);
    }
}

#[test]
fn a_sequence_that_cannot_be_trimmed_runs_its_prompt_cold() {
    // llama.cpp may refuse to remove part of a sequence; the tail must not stay attended to.
    let mut s = memory_state(4, 1, None);
    let first = bytes("the first turn of this agent");
    let (reply, _) = ask(&mut s, "default", Some("bob"), &first, 5);
    let mut next = bytes("the first turn of a different story");
    next.extend(bytes(" with more"));
    s.engine().control().lock().unwrap().fail_partial_truncates = 1;
    let (answer, usage) = ask(&mut s, "default", Some("bob"), &next, 5);
    assert_eq!(usage.cached_tokens, 0, "{reply}");
    let mut cold = memory_state(4, 1, None);
    assert_eq!(ask(&mut cold, "default", None, &next, 5).0, answer);
}

#[test]
fn agents_evicted_to_ram_come_back_with_the_same_answers() {
    // 3 sequences, 1 running: at most 2 idle hot agents, so the third pushes the first to warm.
    let mut s = memory_state(3, 1, None);
    let prompts: Vec<Vec<TokenId>> = (0..4).map(|i| bytes(&format!("agent {i} says hello there"))).collect();
    let mut replies = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        replies.push(ask(&mut s, "default", Some(&format!("a{i}")), p, 5).0);
    }
    let key = |i: usize| AgentKey {
        namespace: crate::Namespace::default_ns(),
        agent: crate::AgentId::parse(&format!("a{i}")).unwrap(),
    };
    assert_eq!(s.agents.memory().get(&key(0)).unwrap().tier, Tier::Warm);
    let mut next = prompts[0].clone();
    next.extend(bytes(&replies[0]));
    next.extend(bytes(" and again"));
    let (warm_answer, usage) = ask(&mut s, "default", Some("a0"), &next, 5);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::Warm));
    assert_eq!(usage.cached_tokens, prompts[0].len() + 4);
    let mut cold = memory_state(3, 1, None);
    assert_eq!(ask(&mut cold, "default", None, &next, 5).0, warm_answer);
}

#[test]
fn idle_agents_stay_resident_until_a_sequence_is_needed_least_recently_used_first() {
    let mut s = memory_state(2, 1, None);
    let key = |name: &str| AgentKey {
        namespace: crate::Namespace::default_ns(),
        agent: crate::AgentId::parse(name).unwrap(),
    };
    let tiers = |s: &State<FakeEngine>| ["a", "b", "c"].map(|n| s.agents.memory().get(&key(n)).map(|info| info.tier));
    let prompt = |name: &str| bytes(&format!("{name:<25}"));
    ask(&mut s, "default", Some("a"), &prompt("a"), 5);
    ask(&mut s, "default", Some("b"), &prompt("b"), 5);
    assert_eq!(tiers(&s), [Some(Tier::Hot), Some(Tier::Hot), None], "two sequences, two residents");
    ask(&mut s, "default", Some("c"), &prompt("c"), 5);
    assert_eq!(tiers(&s), [Some(Tier::Warm), Some(Tier::Hot), Some(Tier::Hot)], "the third needed one");
    let (_, usage) = ask(&mut s, "default", Some("b"), &prompt("b"), 5);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::Hot));
    // "a" comes back from warm; of the idle "b" and "c", "c" was used least recently.
    let (reply, usage) = ask(&mut s, "default", Some("a"), &prompt("a"), 5);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::Warm));
    assert_eq!(tiers(&s), [Some(Tier::Hot), Some(Tier::Hot), Some(Tier::Warm)]);
    let mut cold = memory_state(2, 1, None);
    assert_eq!(ask(&mut cold, "default", None, &prompt("a"), 5).0, reply);
}

#[test]
fn hot_hit_on_the_least_recently_used_agent_when_cells_are_short_keeps_its_kv() {
    // Regression: making room for a hot hit could demote the very agent being placed, whose
    // freed sequence was then decoded as if its KV were still there.
    let mut s = State::new(
        FakeEngine::new(200, 512, 2),
        SchedulerConfig {
            max_running: 1,
            step_token_budget: 64,
            queue_capacity: 64,
            memory: crate::MemoryConfig { warm_bytes: 1 << 20, ..Default::default() },
        },
        Arc::default(),
    );
    let first = bytes("the first agent asks this");
    let (reply, _) = ask(&mut s, "default", Some("old"), &first, 5);
    ask(&mut s, "default", Some("new"), &bytes("another agent talks here"), 5);
    let mut next = first.clone();
    next.extend(bytes(&reply));
    next.extend(bytes(" and then a longer follow-up question that needs many more cells"));
    let (answer, usage) = ask(&mut s, "default", Some("old"), &next, 5);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::Hot));
    let mut cold = memory_state(4, 1, None);
    assert_eq!(ask(&mut cold, "default", None, &next, 5).0, answer);
}

#[test]
fn agents_survive_a_restart_through_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let turn1 = bytes("remember the number forty two");
    let reply = {
        let mut s = memory_state(4, 1, Some(dir.clone()));
        let (reply, _) = ask(&mut s, "default", Some("carol"), &turn1, 5);
        assert!(s.agents.flush(&s.engine, Duration::from_secs(10)));
        reply
    };
    let mut s = memory_state(4, 1, Some(dir.clone()));
    let key = AgentKey { namespace: crate::Namespace::default_ns(), agent: crate::AgentId::parse("carol").unwrap() };
    assert_eq!(s.agents.memory().get(&key).unwrap().tier, Tier::Cold);
    let mut turn2 = turn1.clone();
    turn2.extend(bytes(&reply));
    turn2.extend(bytes("?"));
    let (answer, usage) = ask(&mut s, "default", Some("carol"), &turn2, 5);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::Disk));
    assert_eq!(usage.cached_tokens, turn1.len() + 4);
    let mut cold = memory_state(4, 1, None);
    assert_eq!(ask(&mut cold, "default", None, &turn2, 5).0, answer);
}

#[test]
fn a_dirty_agent_waits_until_idle_long_enough_before_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut s = memory_state(4, 1, Some(dir.clone()));
    ask(&mut s, "default", Some("dave"), &bytes("a quick turn"), 3);
    let key = AgentKey { namespace: crate::Namespace::default_ns(), agent: crate::AgentId::parse("dave").unwrap() };
    // Just used: not written yet, and the loop is told how long to wait (at most the limit).
    match s.agents.persist_idle(&s.engine, Duration::from_secs(60)) {
        Persist::Wait(wait) => {
            assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60), "{wait:?}")
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    assert!(s.agents.memory().get(&key).unwrap().dirty);
    // Idle long enough (a zero limit): written; once the writer confirms, nothing is left to do.
    assert_eq!(s.agents.persist_idle(&s.engine, Duration::ZERO), Persist::Wrote);
    assert!(s.agents.flush(&s.engine, Duration::from_secs(10)));
    assert_eq!(s.agents.persist_idle(&s.engine, Duration::from_secs(60)), Persist::Nothing);
    assert!(!s.agents.memory().get(&key).unwrap().dirty);
}

#[test]
fn a_finished_turn_reaches_disk_while_another_request_keeps_the_server_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut s = memory_state(4, 2, Some(dir.clone()));
    let submit_for = |s: &mut State<FakeEngine>, agent: &str, text: &str, max_tokens: usize| {
        let agent = crate::AgentRef {
            namespace: crate::Namespace::default_ns(),
            agent: Some(crate::AgentId::parse(agent).unwrap()),
        };
        let request = GenerateRequest {
            prompt: bytes(text),
            max_tokens,
            sampling: SamplingParams::greedy(),
            stop: vec![],
            agent,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        s.shared.queued.fetch_add(1, Ordering::Relaxed);
        s.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
        rx
    };
    let _busy = submit_for(&mut s, "busy", "a long answer please", 2000);
    let mut quick = submit_for(&mut s, "quick", "a short one", 3);
    let mut done = false;
    for _ in 0..1000 {
        s.step();
        while let Ok(event) = quick.try_recv() {
            done |= matches!(event, Event::Done { .. });
        }
        if done {
            break;
        }
    }
    assert!(done, "the quick turn finished");
    assert!(!s.is_idle(), "the long request still runs: the server never went idle");
    let key = AgentKey { namespace: crate::Namespace::default_ns(), agent: crate::AgentId::parse("quick").unwrap() };
    assert!(s.agents.memory().get(&key).unwrap().dirty);
    assert_eq!(s.agents.persist_overdue(&s.engine, Duration::from_secs(60)), None, "not overdue yet");
    assert!(s.agents.persist_overdue(&s.engine, Duration::ZERO).is_some(), "overdue: exported between steps");
    assert_eq!(s.agents.persist_overdue(&s.engine, Duration::ZERO), None, "the running agent is never exported");
    // Wait for the writer (the running agent has nothing to write until its turn ends).
    assert!(s.agents.flush(&s.engine, Duration::from_secs(10)));
    assert!(!s.is_idle(), "still busy");
    assert!(!s.agents.memory().get(&key).unwrap().dirty, "the quick agent's turn is on disk");
    fn files(dir: &std::path::Path) -> usize {
        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
        entries.map(|e| if e.path().is_dir() { files(&e.path()) } else { 1 }).sum()
    }
    assert!(files(&dir) >= 1, "an agent file was written");
}

/// Regression (issue 19, full disk): with a write in flight and nothing else to do, the idle loop
/// blocked on the command channel, so a failed write was counted and retried only when the next
/// request came; now it is told to come back for the outcome.
#[test]
fn an_idle_scheduler_comes_back_for_a_write_in_flight() {
    let dir = std::env::temp_dir().join(format!("semantic-step-inflight-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = memory_state(4, 1, Some(dir.clone()));
    ask(&mut s, "default", Some("erin"), &bytes("remember this"), 3);
    assert_eq!(s.agents.persist_idle(&s.engine, Duration::ZERO), Persist::Wrote);
    match s.agents.persist_idle(&s.engine, Duration::ZERO) {
        Persist::Wait(wait) => assert!(wait <= Duration::from_millis(20), "{wait:?}"),
        other => panic!("the write's outcome is still to be taken, got {other:?}"),
    }
    assert!(s.agents.flush(&s.engine, Duration::from_secs(10)));
    assert_eq!(s.agents.persist_idle(&s.engine, Duration::ZERO), Persist::Nothing, "nothing left to wait for");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_agent_exported_from_disk_imports_under_another_name_persists_and_continues_like_a_cold_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let turn1 = bytes("remember the colour teal");
    let mut s = memory_state(4, 1, Some(dir.clone()));
    let (reply, _) = ask(&mut s, "default", Some("erin"), &turn1, 5);
    let key =
        |id: &str| AgentKey { namespace: crate::Namespace::default_ns(), agent: crate::AgentId::parse(id).unwrap() };
    s.evict_to_disk(&key("erin")).unwrap();
    assert_eq!(s.agents.memory().get(&key("erin")).unwrap().tier, Tier::Cold);
    let exported = s.agents.snapshot(&s.engine, &key("erin")).expect("read from its file");
    assert_eq!(s.agents.memory().get(&key("erin")).unwrap().tier, Tier::Cold, "export moves nothing");
    assert_eq!(exported.header.tokens.len(), turn1.len() + 4);

    let mut copy = exported.clone();
    copy.header.agent = crate::AgentId::parse("frank").unwrap();
    assert_eq!(s.import_agent(copy.clone(), false).unwrap().tier, Tier::Warm);
    assert_eq!(s.import_agent(copy.clone(), false).unwrap_err(), crate::AgentOpError::Exists);
    let mut foreign = copy.clone();
    foreign.header.state_layout ^= 1;
    assert!(matches!(s.import_agent(foreign, true), Err(crate::AgentOpError::Incompatible { .. })));
    assert!(s.agents.flush(&s.engine, Duration::from_secs(10)), "the import is written like any turn");
    assert!(!s.agents.memory().get(&key("frank")).unwrap().dirty);
    drop(s);

    let mut s = memory_state(4, 1, Some(dir));
    let mut turn2 = turn1.clone();
    turn2.extend(bytes(&reply));
    turn2.extend(bytes("?"));
    let (answer, usage) = ask(&mut s, "default", Some("frank"), &turn2, 5);
    assert_eq!(usage.cache_source, Some(crate::CacheSource::Disk), "after a restart, from the imported file");
    assert_eq!(usage.cached_tokens, turn1.len() + 4);
    let mut cold = memory_state(4, 1, None);
    assert_eq!(ask(&mut cold, "default", None, &turn2, 5).0, answer);
}
