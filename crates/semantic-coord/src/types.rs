//! The closed sets of the coordination layer (topology, debate format, decision mode, lifecycle,
//! channel), parsed once from their wire names; and the agent of a session as specified.

use serde::{Deserialize, Serialize};

/// Declares a closed set with its wire names: `FromStr` (the error lists the accepted names),
/// `as_str`, `ALL`, serde as the wire name.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// The accepted wire names, for error messages: `a, b or c`.
            pub fn expected() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => format!("{} or {}", rest.join(", "), last),
                    _ => names.join(""),
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {:?} (expected {})", stringify!($name), other, Self::expected())),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

// Scenario enums (role, layout, ...) are declared with the same macro.
pub(crate) use wire_enum;

wire_enum! {
    /// Who speaks when, and who sees what.
    Topology {
        /// Agents speak in the session's fixed order; everyone sees every public message.
        #[default]
        TurnByTurn = "turn_by_turn",
        /// Same order rule as `turn_by_turn` (the original kept both names).
        RoundRobin = "round_robin",
        /// Every agent answers the same state: within a round no agent sees another's answer,
        /// and a round's turns run concurrently.
        Broadcast = "broadcast",
        /// Fixed order, but a turn's message reaches only the agents the session's interactions
        /// name (default: each agent to the next one in the order, a ring of private channels).
        Whisper = "whisper",
        /// Fixed order unless a turn request names the next speaker.
        Interrupt = "interrupt",
    }
}

wire_enum! {
    /// The style of the conversation (a hint in each agent's instructions).
    DebateFormat {
        /// No style hint.
        #[default]
        FreeForm = "free_form",
        /// Claim, reasons, evidence.
        Structured = "structured",
        /// Questions that probe the others' claims.
        Socratic = "socratic",
        /// The critic argues against the prevailing view.
        DevilsAdvocate = "devils_advocate",
        /// Formal address, motions, for and against.
        Parliamentary = "parliamentary",
    }
}

wire_enum! {
    /// How the session's votes become a decision.
    DecisionMode {
        /// No decision is computed.
        #[default]
        None = "none",
        /// The choice with the most votes; ties reported.
        MajorityVote = "majority_vote",
        /// Instant runoff over ranked ballots.
        RankedChoice = "ranked_choice",
        /// The coordinator's (moderator's) vote decides.
        CoordinatorDecides = "coordinator_decides",
        /// Every voter chose the same; otherwise no decision.
        Consensus = "consensus",
    }
}

wire_enum! {
    /// What happens to an agent's memory when its session ends.
    Lifecycle {
        /// Memory deleted with the session (scenario: cleared between phases).
        #[default]
        Ephemeral = "ephemeral",
        /// Memory kept: a later session with the same agent continues its context.
        Permanent = "permanent",
    }
}

wire_enum! {
    /// How one agent's messages reach another (a scenario phase's `interactions`).
    Channel {
        /// Addressed to the other agent in the open.
        #[default]
        Public = "public",
        /// Privately, to that agent only.
        Whisper = "whisper",
        /// The other agent overhears, unaddressed.
        Observe = "observe",
    }
}

/// Roles that never take a turn (they still see messages and may vote).
pub const SILENT_ROLES: [&str; 1] = ["observer"];

/// Roles whose vote decides under `coordinator_decides`, in order of preference.
pub const COORDINATOR_ROLES: [&str; 3] = ["coordinator", "moderator", "judge"];

/// A directed interaction edge: `from`'s turn messages reach `to` over `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    /// Sender's session agent id.
    pub from: String,
    /// Receiver's session agent id.
    pub to: String,
    /// How the message reaches the receiver.
    pub channel: Channel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_errors_list_them() {
        for t in Topology::ALL {
            assert_eq!(t.as_str().parse::<Topology>(), Ok(*t));
        }
        let err = "star".parse::<Topology>().unwrap_err();
        assert!(err.contains("turn_by_turn, round_robin, broadcast, whisper or interrupt"), "{err}");
        assert_eq!(serde_json::to_string(&DecisionMode::RankedChoice).unwrap(), "\"ranked_choice\"");
    }
}
