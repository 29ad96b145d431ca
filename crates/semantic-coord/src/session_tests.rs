//! Session behaviour without a model: every topology's speaking order and visibility, whispers,
//! and the invariant that an agent's next prompt extends its previous one exactly.

use semantic_chat::Message;

use crate::*;

fn agent(id: &str, role: &str, lifecycle: Lifecycle) -> AgentSpec {
    let mut name = id.to_owned();
    name[..1].make_ascii_uppercase();
    AgentSpec { agent_id: id.into(), display_name: name, role: role.into(), system_prompt: String::new(), lifecycle }
}

fn spec(topology: Topology, ids: &[&str]) -> SessionSpec {
    let agents = ids.iter().map(|id| agent(id, "participant", Lifecycle::Ephemeral)).collect();
    SessionSpec { topology, initial_prompt: "Topic: tea or coffee?".into(), ..SessionSpec::with_agents(agents) }
}

fn session(spec: SessionSpec) -> Session {
    Session::new("sess_1".into(), "default".into(), spec, 0, &|_| None).expect("valid session")
}

/// Runs one planned turn: the agent "says" `{id} says {turn}`.
fn run(s: &mut Session, speaker: Option<&str>) -> TurnRecord {
    let plan = s.plan_turn(speaker).expect("plan");
    let text = format!("{} says {}", plan.agent_id, plan.turn);
    let usage = TurnUsage { prompt_tokens: prompt_len(&plan.messages), cached_tokens: 0, completion_tokens: 3 };
    s.commit(plan, text, usage, "stop", 1).expect("commit")
}

fn prompt_len(messages: &[Message]) -> usize {
    messages.iter().map(|m| m.content.len() + m.role.len()).sum()
}

fn user_text(s: &Session, id: &str) -> String {
    s.next_prompt(id).unwrap().last().unwrap().content.clone()
}

#[test]
fn round_robin_order_and_every_prompt_extends_the_last() {
    let mut s = session(spec(Topology::RoundRobin, &["ann", "bob", "cy"]));
    let mut previous: Vec<Option<Vec<Message>>> = vec![None; 3];
    let mut order = Vec::new();
    for _ in 0..7 {
        let plan = s.plan_turn(None).unwrap();
        let i = plan.agent_index;
        if let Some(prev) = &previous[i] {
            // The new prompt starts with the old prompt plus the reply given then.
            assert!(plan.messages.len() > prev.len());
            assert_eq!(&plan.messages[..prev.len()], &prev[..]);
            assert_eq!(plan.messages[prev.len()].role, "assistant");
        }
        previous[i] = Some(plan.messages.clone());
        order.push(plan.agent_id.clone());
        let text = format!("{} says {}", plan.agent_id, plan.turn);
        s.commit(plan, text, TurnUsage::default(), "stop", 1).unwrap();
    }
    assert_eq!(order, ["ann", "bob", "cy", "ann", "bob", "cy", "ann"]);
    let ann = s.next_prompt("bob").unwrap();
    assert_eq!(ann[0].role, "system");
    assert!(ann[0].content.starts_with("Your name is Bob."));
    // Bob sees Ann's latest turn; his own turns are replies, not lines.
    let text = user_text(&s, "bob");
    assert_eq!(text, "Cy: cy says 6\n\nAnn: ann says 7\n\n[Bob, respond now.]");
    assert_eq!(s.turn_log.len(), 7);
    assert_eq!(s.turn_log[6].round, 3);
}

#[test]
fn first_prompt_has_the_opening_and_the_private_prompt() {
    let mut sp = spec(Topology::TurnByTurn, &["ann", "bob"]);
    sp.per_agent_prompts = vec![("bob".into(), "You secretly like coffee.".into())];
    let s = session(sp);
    assert_eq!(user_text(&s, "ann"), "Topic: tea or coffee?\n\n[Ann, respond now.]");
    assert_eq!(
        user_text(&s, "bob"),
        "Topic: tea or coffee?\n\n(only you know this) You secretly like coffee.\n\n[Bob, respond now.]"
    );
    assert_eq!(s.transcript(None).unwrap().len(), 1, "the private prompt is not public");
}

#[test]
fn broadcast_agents_answer_the_same_state_and_see_the_round_after_it() {
    let mut s = session(spec(Topology::Broadcast, &["ann", "bob", "cy"]));
    let plans = s.plan_batch(10).unwrap();
    assert_eq!(plans.len(), 3, "a whole round runs together");
    for plan in &plans {
        let user = &plan.messages.last().unwrap().content;
        assert_eq!(user, &format!("Topic: tea or coffee?\n\n[{}, respond now.]", plan.agent_name));
    }
    for plan in plans {
        let text = format!("{} says {}", plan.agent_id, plan.turn);
        s.commit(plan, text, TurnUsage::default(), "stop", 1).unwrap();
    }
    // Single turns within a round see the same state as the batch would have.
    let first = run(&mut s, None);
    assert_eq!(first.agent_id, "ann");
    let bob = user_text(&s, "bob");
    assert!(bob.contains("Ann: ann says 1") && bob.contains("Cy: cy says 3"), "{bob}");
    assert!(!bob.contains("ann says 4"), "a turn of the current round is hidden: {bob}");
    let batch = s.plan_batch(10).unwrap();
    assert_eq!(batch.len(), 2, "the rest of the round");
}

#[test]
fn whisper_topology_routes_turns_along_the_interactions() {
    let mut sp = spec(Topology::Whisper, &["ann", "bob", "cy"]);
    sp.initial_prompt.clear();
    sp.interactions = vec![
        Interaction { from: "ann".into(), to: "bob".into(), channel: Channel::Whisper },
        Interaction { from: "ann".into(), to: "cy".into(), channel: Channel::Observe },
    ];
    let mut s = session(sp);
    run(&mut s, None);
    assert_eq!(user_text(&s, "bob"), "Ann (privately, to you): ann says 1\n\n[Bob, respond now.]");
    run(&mut s, None);
    // Bob has no edges: his turn reaches nobody.
    assert_eq!(user_text(&s, "cy"), "(overheard) Ann: ann says 1\n\n[Cy, respond now.]");
    assert!(s.transcript(None).unwrap().is_empty());
    assert_eq!(s.transcript(Some("bob")).unwrap().len(), 2);
}

#[test]
fn whisper_topology_without_interactions_is_a_ring() {
    let mut sp = spec(Topology::Whisper, &["ann", "bob", "cy"]);
    sp.initial_prompt.clear();
    let mut s = session(sp);
    run(&mut s, None);
    run(&mut s, None);
    assert_eq!(user_text(&s, "cy"), "Bob (privately, to you): bob says 2\n\n[Cy, respond now.]");
    assert_eq!(user_text(&s, "ann"), "[Ann, respond now.]");
}

#[test]
fn whispers_reach_the_two_agents_and_no_one_else() {
    let mut s = session(spec(Topology::RoundRobin, &["ann", "bob", "cy"]));
    s.whisper("ann", "cy", "vote tea", 1).unwrap();
    assert!(user_text(&s, "cy").contains("Ann (whispering to you only): vote tea"));
    assert!(user_text(&s, "ann").contains("(you whispered to Cy): vote tea"));
    assert!(!user_text(&s, "bob").contains("vote tea"));
    assert_eq!(s.transcript(None).unwrap().len(), 1);
    assert_eq!(s.transcript(Some("cy")).unwrap().len(), 2);
    assert_eq!(s.transcript(Some("bob")).unwrap().len(), 1);
    for (from, to, param) in
        [("zed", "ann", "from_agent_id"), ("ann", "zed", "to_agent_id"), ("ann", "ann", "to_agent_id")]
    {
        match s.whisper(from, to, "x", 1) {
            Err(CoordError::Invalid { param: p, .. }) => assert_eq!(p, param),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(s.whisper("ann", "bob", "  ", 1), Err(CoordError::Invalid { .. })));
}

#[test]
fn interrupt_lets_a_turn_name_the_speaker_and_others_refuse() {
    let mut s = session(spec(Topology::Interrupt, &["ann", "bob", "cy"]));
    assert_eq!(run(&mut s, Some("cy")).agent_id, "cy");
    assert_eq!(run(&mut s, None).agent_id, "ann", "the order goes on after the interrupter");
    assert!(matches!(s.plan_turn(Some("zed")), Err(CoordError::NotFound { .. })));
    let mut rr = session(spec(Topology::RoundRobin, &["ann", "bob"]));
    assert!(matches!(rr.plan_turn(Some("bob")), Err(CoordError::Invalid { .. })));
    assert_eq!(run(&mut rr, Some("ann")).agent_id, "ann", "naming the agent due is fine");
}

#[test]
fn observers_never_speak_and_max_turns_finishes_the_session() {
    let mut sp = spec(Topology::RoundRobin, &["ann", "bob"]);
    sp.agents.push(agent("obs", "observer", Lifecycle::Ephemeral));
    sp.max_turns = 3;
    let mut s = session(sp);
    let speakers: Vec<String> = (0..3).map(|_| run(&mut s, None).agent_id).collect();
    assert_eq!(speakers, ["ann", "bob", "ann"]);
    assert_eq!(s.status(), SessionStatus::Finished);
    assert!(matches!(s.plan_turn(None), Err(CoordError::Conflict(_))));
    assert!(user_text(&s, "obs").contains("Bob: bob says 2"));
}

#[test]
fn a_stale_plan_does_not_commit() {
    let mut s = session(spec(Topology::RoundRobin, &["ann", "bob"]));
    let stale = s.plan_turn(None).unwrap();
    run(&mut s, None);
    assert!(matches!(s.commit(stale, "x".into(), TurnUsage::default(), "stop", 1), Err(CoordError::Conflict(_))));
    assert_eq!(s.turns_done, 1);
}

#[test]
fn an_empty_reply_advances_the_turn_but_stays_out_of_the_channel() {
    let mut s = session(spec(Topology::RoundRobin, &["ann", "bob"]));
    let plan = s.plan_turn(None).unwrap();
    let record = s.commit(plan, String::new(), TurnUsage::default(), "stop", 1).unwrap();
    assert_eq!(record.message_index, None);
    assert_eq!(s.transcript(None).unwrap().len(), 1);
    assert_eq!(s.plan_turn(None).unwrap().agent_id, "bob");
    assert_eq!(s.views[0].history.last().unwrap(), &Message::new("assistant", "Ann:"));
}

/// The prompt a turn is generated from ends with the speaker's prefilled `Name:` (SmolLM2 opened
/// replies as another agent without it); the next turn's rendered prompt extends that text.
#[test]
fn a_prefilled_prompt_is_extended_by_the_next_turn() {
    let chatml = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}\
                  {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let template = semantic_chat::ChatTemplate::new(chatml, "", "").unwrap();
    let render = |plan: &TurnPlan| template.render(&plan.messages, None, true).unwrap() + &plan.reply_prefix;
    let mut s = session(spec(Topology::RoundRobin, &["ann", "bob"]));
    let mut previous: Vec<Option<String>> = vec![None; 2];
    for (turn, reply) in ["Tea, always.", "", "Coffee.", "I still say tea."].into_iter().enumerate() {
        let plan = s.plan_turn(None).unwrap();
        let text = render(&plan);
        assert!(text.ends_with(&format!("<|im_start|>assistant\n{}:", plan.agent_name)), "{text}");
        if let Some(prev) = &previous[plan.agent_index] {
            assert!(text.starts_with(prev.as_str()), "turn {turn}: {prev:?} is not a prefix of {text:?}");
        }
        previous[plan.agent_index] = Some(text);
        s.commit(plan, reply.into(), TurnUsage::default(), "stop", 1).unwrap();
    }
    // The channel holds the cleaned replies, never the prefill.
    let said: Vec<&str> = s.transcript(None).unwrap().iter().skip(1).map(|m| m.content.as_str()).collect();
    assert_eq!(said, ["Tea, always.", "Coffee.", "I still say tea."]);
}

#[test]
fn a_permanent_agent_continues_its_history_in_a_new_session() {
    let mut sp = spec(Topology::RoundRobin, &["ann", "bob"]);
    sp.agents[0].lifecycle = Lifecycle::Permanent;
    sp.persistent_cache_prefix = Some("game".into());
    let mut first = session(sp.clone());
    run(&mut first, None);
    run(&mut first, None);
    let ann = first.views[0].clone();
    assert_eq!(ann.memory_id, "persist_game_ann");
    let last_prompt = first.next_prompt("ann").unwrap();
    // Phase two: the client passes what Ann saw (the original's prior_agent_messages).
    sp.initial_prompt = "Phase two.".into();
    sp.prior_agent_messages = vec![(
        "ann".into(),
        vec![
            PriorMessage { sender_id: Some("ann".into()), sender_name: "Ann".into(), content: "ann says 1".into() },
            PriorMessage { sender_id: Some("bob".into()), sender_name: "Bob".into(), content: "bob says 2".into() },
            PriorMessage { sender_id: None, sender_name: "Narrator".into(), content: "Night falls.".into() },
        ],
    )];
    let history = ann.history.clone();
    let second = Session::new("sess_2".into(), "default".into(), sp, 2, &|id| {
        (id == "persist_game_ann").then(|| StoredHistory { history: history.clone(), last_prompt_tokens: Some(40) })
    })
    .unwrap();
    assert!(second.views[0].continued);
    assert!(!second.views[1].continued, "ephemeral agents start afresh");
    let prompt = second.next_prompt("ann").unwrap();
    assert_eq!(&prompt[..ann.history.len()], &ann.history[..], "the old history is the prefix");
    assert_eq!(prompt[..ann.history.len()], last_prompt[..ann.history.len()]);
    let user = &prompt.last().unwrap().content;
    assert!(user.starts_with("Phase two.\n\n(only you know this) A new conversation begins."), "{user}");
    assert!(user.contains("(earlier) Bob: bob says 2"), "lines it never saw are added: {user}");
    assert!(user.contains("(earlier) Narrator: Night falls."), "{user}");
    assert!(!user.contains("ann says 1"), "lines it already holds are not repeated: {user}");
}

#[test]
fn votes_are_checked_against_the_ballot_and_decide_under_the_mode() {
    use crate::decision::{DecisionStatus, Vote, VoteSource};
    let mut sp = spec(Topology::RoundRobin, &["ann", "bob", "cy"]);
    sp.decision_mode = DecisionMode::MajorityVote;
    sp.options = vec!["Tea".into(), "Coffee".into()];
    let mut s = session(sp);
    let vote = |id: &str, choice: &str| Vote {
        agent_id: id.into(),
        choice: Some(choice.into()),
        ranking: vec![],
        source: VoteSource::Api,
    };
    assert_eq!(s.vote(&vote("ann", "tea")).unwrap().choice.as_deref(), Some("Tea"));
    assert!(matches!(s.vote(&vote("ann", "water")), Err(CoordError::Invalid { .. })));
    assert!(matches!(s.vote(&vote("zed", "tea")), Err(CoordError::NotFound { .. })));
    s.vote(&vote("bob", "Coffee")).unwrap();
    let tie = s.decision();
    assert_eq!(tie.status, DecisionStatus::Tie);
    assert_eq!(tie.tied.len(), 2);
    s.vote(&vote("cy", "Coffee")).unwrap();
    s.vote(&vote("ann", "Coffee")).unwrap();
    let decided = s.decision();
    assert_eq!(decided.outcome.as_deref(), Some("Coffee"));
    assert_eq!(decided.votes_cast, 3, "a new vote replaces the agent's old one");
}
