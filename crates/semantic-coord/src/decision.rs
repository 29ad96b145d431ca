//! Votes and decisions: a vote checked against the ballot and the session's voters, and the five
//! decision modes applied to the latest vote of each agent (ties are reported, never broken).
//! Reading a vote out of an agent's free-text answer lives in `decision/parse.rs`.
//!
//! Owns: vote validation and normalisation, tallies, instant runoff. Does not own: storing votes
//! (the session keeps the latest per agent), asking the agents, HTTP shapes.
//! Every ordering is explicit (option order, then name) so a decision is reproducible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CoordError, DecisionMode};

mod parse;

pub use parse::{parse_answer, parse_ranking};

/// Where a vote came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteSource {
    /// Cast through the API.
    #[default]
    Api,
    /// Read out of the agent's answer to a `/decide` prompt.
    Parsed,
}

/// One agent's vote: a choice, a ranking, or both. A choice-only vote counts as a one-entry
/// ranking; a ranking-only vote's choice is its first entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// The voting agent's session agent id.
    pub agent_id: String,
    /// The first choice.
    #[serde(default)]
    pub choice: Option<String>,
    /// Options in order of preference, best first.
    #[serde(default)]
    pub ranking: Vec<String>,
    /// Cast through the API or parsed from an answer.
    #[serde(default)]
    pub source: VoteSource,
}

impl Vote {
    /// The first choice: `choice`, else the first ranked entry; `None` when both are blank.
    pub fn first_choice(&self) -> Option<&str> {
        let choice = self.choice.as_deref().map(str::trim).filter(|c| !c.is_empty());
        choice.or_else(|| self.ranking.first().map(|r| r.trim()).filter(|r| !r.is_empty()))
    }

    /// The vote as a ranked ballot: `ranking`, else `[choice]`.
    fn preferences(&self) -> Vec<&str> {
        if self.ranking.is_empty() {
            self.first_choice().into_iter().collect()
        } else {
            self.ranking.iter().map(|r| r.trim()).filter(|r| !r.is_empty()).collect()
        }
    }
}

/// What a session's agents vote on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ballot {
    /// The options; empty means any non-empty choice is accepted.
    pub options: Vec<String>,
}

impl Ballot {
    /// [`check_vote`] against this ballot's options.
    pub fn check(&self, voters: &[String], vote: &Vote) -> Result<Vote, CoordError> {
        check_vote(&self.options, voters, vote)
    }
}

/// The option `name` stands for (case-insensitive, trimmed), in the option's own spelling; with no
/// options, `name` trimmed. `None` when blank or not an option.
fn canonical(options: &[String], name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if options.is_empty() {
        return Some(name.to_string());
    }
    let lower = name.to_lowercase();
    options.iter().find(|o| o.trim().to_lowercase() == lower).map(|o| o.trim().to_string())
}

/// `a, b, c` with each quoted, for error messages.
fn quoted_list(items: &[String]) -> String {
    items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
}

/// Checks a vote against the ballot's options and the agents allowed to vote, and normalises it:
/// choice and ranking in the options' own spelling (matched case-insensitively), and both filled
/// (a choice-only vote gets a one-entry ranking, a ranking-only vote its first entry as choice).
pub fn check_vote(options: &[String], voters: &[String], vote: &Vote) -> Result<Vote, CoordError> {
    if vote.agent_id.trim().is_empty() {
        return Err(CoordError::invalid("agent_id", "must not be empty"));
    }
    if !voters.contains(&vote.agent_id) {
        return Err(CoordError::NotFound { what: "agent", id: vote.agent_id.clone() });
    }
    if vote.choice.is_none() && vote.ranking.is_empty() {
        return Err(CoordError::invalid("choice", "a vote needs a choice or a ranking"));
    }
    let not_an_option = |name: &str| format!("{name:?} is not one of the options: {}", quoted_list(options));
    let choice = match vote.choice.as_deref() {
        None => None,
        Some(c) if c.trim().is_empty() => return Err(CoordError::invalid("choice", "must not be empty")),
        Some(c) => Some(canonical(options, c).ok_or_else(|| CoordError::invalid("choice", not_an_option(c)))?),
    };
    let mut ranking: Vec<String> = Vec::with_capacity(vote.ranking.len());
    for (i, entry) in vote.ranking.iter().enumerate() {
        if entry.trim().is_empty() {
            return Err(CoordError::invalid("ranking", format!("entry {} is empty", i + 1)));
        }
        let option = canonical(options, entry).ok_or_else(|| CoordError::invalid("ranking", not_an_option(entry)))?;
        if ranking.iter().any(|r| r.to_lowercase() == option.to_lowercase()) {
            return Err(CoordError::invalid("ranking", format!("lists {option:?} more than once")));
        }
        ranking.push(option);
    }
    let choice = match (choice, ranking.first()) {
        (Some(c), Some(first)) if c.to_lowercase() != first.to_lowercase() => {
            return Err(CoordError::invalid(
                "ranking",
                format!("starts with {first:?} but the choice is {c:?}; they must agree"),
            ));
        }
        (Some(c), _) => c,
        (None, Some(first)) => first.clone(),
        // Unreachable by the checks above (no choice and an empty ranking is refused); kept as
        // an error rather than a panic.
        (None, None) => return Err(CoordError::invalid("choice", "a vote needs a choice or a ranking")),
    };
    if ranking.is_empty() {
        ranking.push(choice.clone());
    }
    Ok(Vote { agent_id: vote.agent_id.clone(), choice: Some(choice), ranking, source: vote.source })
}

/// How a decision came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    /// `outcome` is the decided choice.
    Decided,
    /// Several options tied (listed in `tied`); the tie is not broken.
    Tie,
    /// The mode's condition is not met (no consensus, no coordinator vote, every ballot exhausted).
    NoDecision,
    /// Nobody has voted.
    NoVotes,
    /// The session's decision mode is `none`.
    NotApplicable,
}

/// One round of an instant runoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunoffRound {
    /// 1-based.
    pub round: usize,
    /// Ballots per remaining option (each ballot counts for its highest-ranked remaining option),
    /// most first, then in option order.
    pub counts: Vec<(String, usize)>,
    /// Ballots that rank none of the remaining options.
    pub exhausted: usize,
    /// Options eliminated after this round (empty in the deciding round).
    pub eliminated: Vec<String>,
}

/// The outcome of a session's votes under its decision mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The mode applied.
    pub mode: DecisionMode,
    /// The decided choice, when `status` is `decided`.
    pub outcome: Option<String>,
    /// How it came out.
    pub status: DecisionStatus,
    /// The tied options when `status` is `tie`, in option order.
    pub tied: Vec<String>,
    /// First-choice counts, most first, then in option order (options not on the ballot by name).
    pub tally: Vec<(String, usize)>,
    /// The runoff rounds (`ranked_choice` only).
    pub rounds: Vec<RunoffRound>,
    /// Votes counted.
    pub votes_cast: usize,
    /// Agents allowed to vote.
    pub electorate: usize,
    /// One human sentence.
    pub explanation: String,
}

/// The deterministic order of candidates: ballot options first in their order, then others by name.
struct Order<'a> {
    options: &'a [String],
}

impl Order<'_> {
    fn key<'n>(&self, name: &'n str) -> (usize, &'n str) {
        let idx = self.options.iter().position(|o| o.trim() == name).unwrap_or(self.options.len());
        (idx, name)
    }

    /// Counts sorted most first, then in candidate order.
    fn sorted(&self, counts: BTreeMap<&str, usize>) -> Vec<(String, usize)> {
        let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| self.key(a.0).cmp(&self.key(b.0))));
        v.into_iter().map(|(n, c)| (n.to_string(), c)).collect()
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// `A 2, B 1`.
fn spread(tally: &[(String, usize)]) -> String {
    tally.iter().filter(|(_, c)| *c > 0).map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
}

/// Applies `mode` to `votes` (the latest vote of each agent; should an agent appear twice, its last
/// vote counts, and votes with neither choice nor ranking are ignored). `coordinator` is the agent
/// id whose vote decides under `coordinator_decides`; `electorate` is how many agents may vote.
/// Votes are expected in `check_vote`'s normal form: names are compared exactly here.
pub fn decide(
    mode: DecisionMode,
    votes: &[Vote],
    options: &[String],
    coordinator: Option<&str>,
    electorate: usize,
) -> Decision {
    let mut latest: BTreeMap<&str, &Vote> = BTreeMap::new();
    for v in votes.iter().filter(|v| v.first_choice().is_some()) {
        latest.insert(v.agent_id.as_str(), v);
    }
    let order = Order { options };
    let mut first_choices: BTreeMap<&str, usize> =
        options.iter().map(|o| o.trim()).filter(|o| !o.is_empty()).map(|o| (o, 0)).collect();
    for v in latest.values() {
        for name in v.preferences() {
            first_choices.entry(name).or_insert(0);
        }
        if let Some(c) = v.first_choice() {
            *first_choices.entry(c).or_insert(0) += 1;
        }
    }
    let candidates: Vec<String> = order.sorted(first_choices.clone()).into_iter().map(|(n, _)| n).collect();
    let tally = order.sorted(first_choices);
    let votes_cast = latest.len();
    let mut d = Decision {
        mode,
        outcome: None,
        status: DecisionStatus::NoDecision,
        tied: Vec::new(),
        tally,
        rounds: Vec::new(),
        votes_cast,
        electorate,
        explanation: String::new(),
    };
    let turnout = format!("{votes_cast} of {electorate} voters voted");
    if mode == DecisionMode::None {
        d.status = DecisionStatus::NotApplicable;
        d.explanation = "The decision mode is none: votes are recorded but nothing is decided.".into();
        return d;
    }
    if votes_cast == 0 {
        d.status = DecisionStatus::NoVotes;
        d.explanation = format!("No votes have been cast ({electorate} voters).");
        return d;
    }
    match mode {
        DecisionMode::None => {} // returned above
        DecisionMode::MajorityVote => majority(&mut d, &turnout),
        DecisionMode::RankedChoice => {
            let ballots: Vec<Vec<&str>> = latest.values().map(|v| v.preferences()).collect();
            runoff(&mut d, &ballots, &candidates, &order);
        }
        DecisionMode::CoordinatorDecides => {
            let choice = |id: &str| latest.get(id).and_then(|v| v.first_choice());
            coordinator_decides(&mut d, coordinator.map(|id| (id, choice(id))), &turnout);
        }
        DecisionMode::Consensus => consensus(&mut d, &turnout),
    }
    d
}

/// The coordinator's first choice decides; `coordinator` is its id and that choice, if any.
fn coordinator_decides(d: &mut Decision, coordinator: Option<(&str, Option<&str>)>, turnout: &str) {
    match coordinator {
        None => {
            d.explanation = "There is no coordinator in this session (no coordinator, moderator or judge \
                             role), so nothing is decided."
                .into();
        }
        Some((id, Some(choice))) => {
            d.status = DecisionStatus::Decided;
            d.outcome = Some(choice.to_string());
            d.explanation = format!("The coordinator {id} chose {choice} ({turnout}).");
        }
        Some((id, None)) => d.explanation = format!("The coordinator {id} has not voted yet ({turnout})."),
    }
}

/// Decided only when every voter voted and all chose the same option.
fn consensus(d: &mut Decision, turnout: &str) {
    let voted: Vec<&(String, usize)> = d.tally.iter().filter(|(_, c)| *c > 0).collect();
    match voted.as_slice() {
        [(choice, _)] if d.votes_cast >= d.electorate => {
            d.status = DecisionStatus::Decided;
            d.outcome = Some(choice.clone());
            d.explanation = format!("Consensus: all {} voters chose {choice}.", d.votes_cast);
        }
        [(choice, _)] => {
            d.explanation = format!("No consensus yet: every vote cast chose {choice}, but only {turnout}.");
        }
        _ => d.explanation = format!("No consensus: {} ({turnout}).", spread(&d.tally)),
    }
}

/// Plurality of first choices; a tie at the top is reported.
fn majority(d: &mut Decision, turnout: &str) {
    let top = d.tally.first().map_or(0, |(_, c)| *c);
    let leaders: Vec<String> = d.tally.iter().filter(|(_, c)| *c == top).map(|(n, _)| n.clone()).collect();
    if let [winner] = leaders.as_slice() {
        let kind =
            if top * 2 > d.votes_cast { "an absolute majority" } else { "a plurality but not an absolute majority" };
        d.status = DecisionStatus::Decided;
        d.outcome = Some(winner.clone());
        d.explanation = format!("{winner} wins with {top} of {} votes cast, {kind} ({turnout}).", d.votes_cast);
    } else {
        d.status = DecisionStatus::Tie;
        d.explanation =
            format!("Tie between {} with {top} votes each; the tie is not broken ({turnout}).", and_list(&leaders));
        d.tied = leaders;
    }
}

/// Instant runoff: each round every ballot counts for its highest-ranked remaining option; an
/// option with more than half of the continuing ballots wins; otherwise the last-placed options
/// are all eliminated at once, unless they are all that remain, which is a tie among them.
fn runoff(d: &mut Decision, ballots: &[Vec<&str>], candidates: &[String], order: &Order<'_>) {
    let mut remaining: Vec<&str> = candidates.iter().map(String::as_str).collect();
    // Each round removes at least one candidate and never the last, so this ends.
    loop {
        let mut counts: BTreeMap<&str, usize> = remaining.iter().map(|c| (*c, 0)).collect();
        let mut exhausted = 0;
        for ballot in ballots {
            match ballot.iter().find(|c| remaining.contains(c)) {
                Some(c) => *counts.entry(c).or_insert(0) += 1,
                None => exhausted += 1,
            }
        }
        let continuing = ballots.len() - exhausted;
        let counts = order.sorted(counts);
        let round = d.rounds.len() + 1;
        let mut this = RunoffRound { round, counts: counts.clone(), exhausted, eliminated: Vec::new() };
        let (Some((leader, top)), Some((_, low))) = (counts.first(), counts.last()) else {
            d.explanation = "There are no options to decide between.".into();
            return;
        };
        if continuing == 0 {
            d.rounds.push(this);
            d.explanation = format!("Every ballot was exhausted by round {round}; nothing is decided.");
            return;
        }
        if top * 2 > continuing {
            d.rounds.push(this);
            d.status = DecisionStatus::Decided;
            d.outcome = Some(leader.clone());
            d.explanation = format!(
                "{leader} wins in round {round} with {top} of {continuing} continuing ballots (more than half)."
            );
            return;
        }
        let lowest: Vec<String> = counts.iter().filter(|(_, c)| c == low).map(|(n, _)| n.clone()).collect();
        if lowest.len() == remaining.len() {
            d.rounds.push(this);
            d.status = DecisionStatus::Tie;
            d.explanation = format!(
                "Tie between {} in round {round} with {low} ballots each; the tie is not broken.",
                and_list(&lowest)
            );
            d.tied = lowest;
            return;
        }
        remaining.retain(|c| !lowest.iter().any(|l| l == c));
        this.eliminated = lowest;
        d.rounds.push(this);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Asserts one table row, naming it on failure.
    pub(crate) fn check<T: std::fmt::Debug + PartialEq>(case: &str, got: T, want: T) {
        assert_eq!(got, want, "case: {case}");
    }

    pub(crate) fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// A choice-only vote.
    fn choose(agent: &str, choice: &str) -> Vote {
        Vote { agent_id: agent.into(), choice: Some(choice.into()), ranking: Vec::new(), source: VoteSource::Api }
    }

    /// A ranking-only vote.
    fn rank(agent: &str, ranking: &[&str]) -> Vote {
        Vote { agent_id: agent.into(), choice: None, ranking: strings(ranking), source: VoteSource::Api }
    }

    /// An error as `invalid <param>` or `not found <what>`, for tables.
    fn kind(e: &CoordError) -> String {
        match e {
            CoordError::Invalid { param, .. } => format!("invalid {param}"),
            CoordError::NotFound { what, .. } => format!("not found {what}"),
            other => format!("{other}"),
        }
    }

    /// case, options, vote, normalised vote or error kind.
    type VoteCase<'a> = (&'a str, &'a [String], Vote, Result<Vote, String>);

    /// case, mode, options, votes, coordinator, electorate, `summary` of the decision.
    type DecideCase<'a> = (&'a str, DecisionMode, &'a str, &'a str, Option<&'a str>, usize, &'a str);

    #[test]
    fn check_vote_normalises_or_names_the_bad_field() {
        let options = strings(&["Pizza", "Sushi", "Tacos"]);
        let voters = strings(&["a", "b"]);
        let both = |choice: &str, ranking: &[&str]| Vote { choice: Some(choice.into()), ..rank("a", ranking) };
        let ok = |choice: &str, ranking: &[&str]| Ok(both(choice, ranking));
        let cases: Vec<VoteCase> = vec![
            ("choice, other case", &options, choose("a", " pizza "), ok("Pizza", &["Pizza"])),
            ("ranking only", &options, rank("a", &["sushi", "TACOS"]), ok("Sushi", &["Sushi", "Tacos"])),
            ("both agree", &options, both("tacos", &["Tacos", "pizza"]), ok("Tacos", &["Tacos", "Pizza"])),
            (
                "no options: anything",
                &[],
                choose("b", " Go home "),
                Ok(Vote { choice: Some("Go home".into()), ranking: strings(&["Go home"]), ..choose("b", "") }),
            ),
            ("unknown agent", &options, choose("z", "Pizza"), Err("not found agent".into())),
            ("empty agent", &options, choose("", "Pizza"), Err("invalid agent_id".into())),
            ("neither", &options, rank("a", &[]), Err("invalid choice".into())),
            ("blank choice", &options, choose("a", "  "), Err("invalid choice".into())),
            ("blank choice, no options", &[], choose("a", ""), Err("invalid choice".into())),
            ("choice not an option", &options, choose("a", "Burgers"), Err("invalid choice".into())),
            ("duplicate in ranking", &options, rank("a", &["Pizza", "PIZZA"]), Err("invalid ranking".into())),
            ("unknown in ranking", &options, rank("a", &["Pizza", "Curry"]), Err("invalid ranking".into())),
            ("blank in ranking", &options, rank("a", &["Pizza", ""]), Err("invalid ranking".into())),
            (
                "choice and ranking disagree",
                &options,
                both("Sushi", &["Pizza", "Sushi"]),
                Err("invalid ranking".into()),
            ),
        ];
        for (case, opts, vote, want) in cases {
            check(case, check_vote(opts, &voters, &vote).map_err(|e| kind(&e)), want);
        }
        let err = check_vote(&options, &voters, &choose("a", "Burgers")).unwrap_err().to_string();
        check("error lists the options", err.contains(r#""Pizza", "Sushi", "Tacos""#), true);
        let ballot = Ballot { options: options.clone() };
        check(
            "ballot delegates",
            ballot.check(&voters, &choose("b", "SUSHI")).map_err(|e| kind(&e)),
            Ok(Vote { choice: Some("Sushi".into()), ranking: strings(&["Sushi"]), ..choose("b", "") }),
        );
    }

    /// Votes written `agent:first>second`: one entry is a choice-only vote, `X>` a one-entry
    /// ranking, nothing after the colon a blank vote.
    fn votes(spec: &str) -> Vec<Vote> {
        let vote = |item: &str| {
            let (agent, prefs) = item.split_once(':').unwrap_or((item, ""));
            match prefs.split('>').filter(|p| !p.is_empty()).collect::<Vec<_>>() {
                one if one.len() == 1 && !prefs.contains('>') => choose(agent, one[0]),
                ranking => rank(agent, &ranking),
            }
        };
        spec.split_whitespace().map(vote).collect()
    }

    /// A decision as `status outcome-or-tied`, for tables.
    fn summary(d: &Decision) -> String {
        let status = serde_json::to_value(d.status).unwrap();
        let detail = d.outcome.clone().unwrap_or_else(|| d.tied.join(","));
        format!("{} {detail}", status.as_str().unwrap_or_default()).trim().to_string()
    }

    #[test]
    fn decide_applies_each_mode() {
        use DecisionMode::*;
        #[rustfmt::skip]
        let cases: &[DecideCase] = &[
            ("mode none", None, "A B C", "a:A", Option::None, 1, "not_applicable"),
            ("no votes", MajorityVote, "A B C", "", Option::None, 3, "no_votes"),
            ("blank votes ignored", Consensus, "A B C", "a:", Option::None, 1, "no_votes"),
            ("majority: absolute", MajorityVote, "A B C", "a:B b:B c:A", Option::None, 3, "decided B"),
            ("majority: plurality", MajorityVote, "A B C", "a:B b:B c:A d:C", Option::None, 4, "decided B"),
            ("majority: tie reported", MajorityVote, "A B C", "a:C b:A c:C d:A", Option::None, 4, "tie A,C"),
            ("majority: ranking's first", MajorityVote, "A B C", "a:C>A b:A c:C>", Option::None, 3, "decided C"),
            ("majority: last vote per agent", MajorityVote, "A B C", "a:A b:B a:B", Option::None, 2, "decided B"),
            ("majority: free options", MajorityVote, "", "a:go b:stay c:go", Option::None, 3, "decided go"),
            ("ranked: first round", RankedChoice, "A B C", "a:A> b:A>B c:B>", Option::None, 3, "decided A"),
            ("ranked: transfer wins", RankedChoice, "A B C", "a:A b:A c:B d:B e:C>B", Option::None, 5, "decided B"),
            ("ranked: two-way tie", RankedChoice, "A B C", "a:A b:B", Option::None, 2, "tie A,B"),
            ("ranked: three-way tie", RankedChoice, "A B C", "a:A>B b:B>C c:C>A", Option::None, 3, "tie A,B,C"),
            ("ranked: exhausted ballots", RankedChoice, "A B C", "a:A b:A c:B d:C e:C", Option::None, 5, "tie A,C"),
            ("ranked: free options", RankedChoice, "", "a:x>y b:y c:y d:z>x", Option::None, 4, "decided y"),
            ("coordinator decides", CoordinatorDecides, "A B C", "a:A m:C b:A", Some("m"), 3, "decided C"),
            ("coordinator ranked", CoordinatorDecides, "A B C", "m:B>A", Some("m"), 3, "decided B"),
            ("no coordinator", CoordinatorDecides, "A B C", "a:A", Option::None, 3, "no_decision"),
            ("coordinator silent", CoordinatorDecides, "A B C", "a:A", Some("m"), 3, "no_decision"),
            ("consensus", Consensus, "A B C", "a:B b:B>A", Option::None, 2, "decided B"),
            ("consensus: someone missing", Consensus, "A B C", "a:B b:B", Option::None, 3, "no_decision"),
            ("consensus: split", Consensus, "A B C", "a:B b:A", Option::None, 2, "no_decision"),
        ];
        for (case, mode, options, spec, coordinator, electorate, want) in cases {
            let options: Vec<String> = options.split_whitespace().map(String::from).collect();
            let d = decide(*mode, &votes(spec), &options, *coordinator, *electorate);
            check(case, summary(&d).as_str(), *want);
            check(&format!("{case}: explained"), d.explanation.is_empty(), false);
        }
    }

    #[test]
    fn decide_explains_and_records_its_work() {
        let abc = strings(&["A", "B", "C"]);
        let cases: Vec<(&str, Decision, &str)> = vec![
            (
                "absolute majority",
                decide(
                    DecisionMode::MajorityVote,
                    &[choose("a", "A"), choose("b", "A"), choose("c", "B")],
                    &abc,
                    None,
                    3,
                ),
                "A wins with 2 of 3 votes cast, an absolute majority (3 of 3 voters voted).",
            ),
            (
                "plurality",
                decide(
                    DecisionMode::MajorityVote,
                    &[choose("a", "A"), choose("b", "C"), choose("c", "B"), choose("d", "A")],
                    &abc,
                    None,
                    5,
                ),
                "A wins with 2 of 4 votes cast, a plurality but not an absolute majority (4 of 5 voters voted).",
            ),
            (
                "consensus spread",
                decide(DecisionMode::Consensus, &[choose("a", "A"), choose("b", "C"), choose("c", "C")], &abc, None, 3),
                "No consensus: C 2, A 1 (3 of 3 voters voted).",
            ),
            (
                "consensus turnout",
                decide(DecisionMode::Consensus, &[choose("a", "A")], &abc, None, 2),
                "No consensus yet: every vote cast chose A, but only 1 of 2 voters voted.",
            ),
        ];
        for (case, d, want) in cases {
            check(case, d.explanation.as_str(), want);
        }

        let votes =
            [rank("a", &["A"]), rank("b", &["A"]), rank("c", &["B"]), rank("d", &["B"]), rank("e", &["C", "B"])];
        let d = decide(DecisionMode::RankedChoice, &votes, &abc, None, 5);
        let round = |n: usize, counts: &[(&str, usize)], exhausted: usize, eliminated: &[&str]| RunoffRound {
            round: n,
            counts: counts.iter().map(|(c, k)| (c.to_string(), *k)).collect(),
            exhausted,
            eliminated: strings(eliminated),
        };
        check(
            "runoff rounds",
            d.rounds.clone(),
            vec![round(1, &[("A", 2), ("B", 2), ("C", 1)], 0, &["C"]), round(2, &[("B", 3), ("A", 2)], 0, &[])],
        );
        check("tally is first choices", d.tally.clone(), vec![("A".into(), 2), ("B".into(), 2), ("C".into(), 1)]);
        check(
            "runoff explanation",
            d.explanation.as_str(),
            "B wins in round 2 with 3 of 5 continuing ballots (more than half).",
        );

        // Options nobody ranked first are eliminated together in round 1.
        let d = decide(DecisionMode::RankedChoice, &[rank("a", &["C"]), rank("b", &["C"])], &abc, None, 2);
        check("unranked options", d.rounds.len(), 1);
        check("zero-vote tally kept", d.tally.clone(), vec![("C".into(), 2), ("A".into(), 0), ("B".into(), 0)]);
    }

    #[test]
    fn decide_is_independent_of_vote_order_and_serialises_snake_case() {
        let abc = strings(&["A", "B", "C"]);
        let votes = vec![rank("a", &["B", "A"]), rank("b", &["A"]), rank("c", &["C", "A"]), rank("d", &["B"])];
        let mut reversed = votes.clone();
        reversed.reverse();
        for mode in DecisionMode::ALL {
            check(
                mode.as_str(),
                decide(*mode, &votes, &abc, Some("a"), 4),
                decide(*mode, &reversed, &abc, Some("a"), 4),
            );
        }
        let json = serde_json::to_value(decide(DecisionMode::Consensus, &votes, &abc, None, 4)).unwrap();
        check("mode", json["mode"].clone(), serde_json::json!("consensus"));
        check("status", json["status"].clone(), serde_json::json!("no_decision"));
        check("tally", json["tally"][0].clone(), serde_json::json!(["B", 2]));
        let vote: Vote = serde_json::from_str(r#"{"agent_id":"a","choice":"A","source":"parsed"}"#).unwrap();
        check("vote wire", (vote.source, vote.ranking.len()), (VoteSource::Parsed, 0));
    }
}
