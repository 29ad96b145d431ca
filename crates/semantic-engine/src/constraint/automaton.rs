//! `JsonState`: where generation stands in a [`JsonGrammar`], as a set of stacks of frames (a set because `anyOf`,
//! `enum` and optional properties are ambiguous until enough bytes are seen). Feeding a byte maps each stack to its
//! successors; a state with no stack left is dead. Does not know tokens (see [`super::TokenTrie`]).

use std::sync::Arc;

use super::schema::{JsonGrammar, Node, NodeId, ANY, KEYWORDS, MAX_FRAC_DIGITS, MAX_INT_DIGITS};

/// Phases of a string frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    /// Before the opening quote.
    Open,
    /// Inside, no escape pending.
    None,
    /// After a backslash.
    Backslash,
    /// Inside `\u`, this many hex digits to go.
    Hex(u8),
}

/// Phases of a number frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
}

/// Phases of an object or array frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Open,
    AfterOpen,
    /// Generic objects only: a key was read, `:` comes next.
    Colon,
    AfterValue,
    AfterComma,
}

/// One level of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Value(NodeId),
    Lit { lit: u32, pos: u32 },
    Str { esc: Esc, len: u32, min: u32, max: u32 },
    Num { node: NodeId, phase: Num, neg: bool, value: i64, digits: u8 },
    Obj { node: NodeId, phase: Agg, next: u32 },
    AnyObj { phase: Agg },
    Arr { node: NodeId, phase: Agg, count: u32 },
}

type Stack = Vec<Frame>;

/// Generation's position in a grammar: every stack still consistent with the bytes so far.
#[derive(Debug, Clone)]
pub struct JsonState {
    grammar: Arc<JsonGrammar>,
    stacks: Vec<Stack>,
}

impl JsonState {
    /// The state before the first byte.
    pub fn new(grammar: Arc<JsonGrammar>) -> Self {
        let root = grammar.root;
        Self { grammar, stacks: vec![vec![Frame::Value(root)]] }
    }

    /// Whether no output can continue to a valid value.
    pub fn is_dead(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Whether the bytes so far form one complete value (generation may end here).
    pub fn is_complete(&self) -> bool {
        self.stacks.iter().any(|s| self.complete(s))
    }

    /// The state after `bytes`; dead if they leave the grammar.
    pub fn advanced(&self, bytes: &[u8]) -> Self {
        let mut next = self.clone();
        for &b in bytes {
            next = next.step(b);
            if next.is_dead() {
                break;
            }
        }
        next
    }

    /// Advances in place; returns false (and leaves the state dead) if `bytes` leave the grammar.
    pub fn advance(&mut self, bytes: &[u8]) -> bool {
        *self = self.advanced(bytes);
        !self.is_dead()
    }

    /// The state after one byte.
    pub(crate) fn step(&self, b: u8) -> Self {
        let mut out: Vec<Stack> = Vec::with_capacity(self.stacks.len());
        for s in &self.stacks {
            feed(&self.grammar, s.clone(), b, &mut out);
        }
        let mut unique: Vec<Stack> = Vec::with_capacity(out.len());
        for s in out {
            if !unique.contains(&s) {
                unique.push(s);
            }
        }
        Self { grammar: Arc::clone(&self.grammar), stacks: unique }
    }

    fn complete(&self, stack: &Stack) -> bool {
        stack.iter().rev().all(|f| matches!(f, Frame::Num { .. }) && num_accepting(&self.grammar, f))
    }
}

/// Pushes onto `out` every stack `stack` becomes after byte `b`.
fn feed(g: &JsonGrammar, mut stack: Stack, b: u8, out: &mut Vec<Stack>) {
    let Some(top) = stack.pop() else { return };
    match top {
        Frame::Value(node) => {
            if let Node::Seq(parts) = g.node(node) {
                stack.extend(parts.iter().rev().map(|&id| Frame::Value(id)));
                return feed(g, stack, b, out);
            }
            for first in starts(g, node) {
                let mut s = stack.clone();
                s.push(first);
                feed(g, s, b, out);
            }
        }
        Frame::Lit { lit, pos } => {
            let bytes = &g.literals[lit as usize];
            if bytes.get(pos as usize) == Some(&b) {
                if pos as usize + 1 < bytes.len() {
                    stack.push(Frame::Lit { lit, pos: pos + 1 });
                }
                out.push(stack);
            }
        }
        Frame::Str { esc, len, min, max } => {
            if let Some(esc) = string_byte(esc, len, min, max, b) {
                if let Some((esc, len)) = esc {
                    stack.push(Frame::Str { esc, len, min, max });
                }
                out.push(stack);
            }
        }
        Frame::Num { node, phase, neg, value, digits } => {
            if let Some(next) = num_byte(g, node, phase, neg, value, digits, b) {
                stack.push(next);
                out.push(stack);
            } else if num_accepting(g, &top) {
                feed(g, stack, b, out);
            }
        }
        Frame::Obj { node, phase, next } => object_byte(g, stack, node, phase, next, b, out),
        Frame::AnyObj { phase } => {
            let mut push = |mut s: Stack, frames: &[Frame]| {
                s.extend_from_slice(frames);
                out.push(s);
            };
            let key = Frame::Str { esc: Esc::None, len: 0, min: 0, max: u32::MAX };
            match (phase, b) {
                (Agg::Open, b'{') => push(stack, &[Frame::AnyObj { phase: Agg::AfterOpen }]),
                (Agg::AfterOpen | Agg::AfterComma, b'"') => push(stack, &[Frame::AnyObj { phase: Agg::Colon }, key]),
                (Agg::AfterOpen | Agg::AfterValue, b'}') => push(stack, &[]),
                (Agg::Colon, b':') => push(stack, &[Frame::AnyObj { phase: Agg::AfterValue }, Frame::Value(ANY)]),
                (Agg::AfterValue, b',') => push(stack, &[Frame::AnyObj { phase: Agg::AfterComma }]),
                _ => {}
            }
        }
        Frame::Arr { node, phase, count } => {
            let (items, min, max) = match g.node(node) {
                Node::Array { items, min, max } => (*items, *min, max.unwrap_or(u32::MAX)),
                _ => (ANY, 0, u32::MAX),
            };
            match (phase, b) {
                (Agg::Open, b'[') => {
                    stack.push(Frame::Arr { node, phase: Agg::AfterOpen, count });
                    out.push(stack);
                }
                (Agg::AfterOpen | Agg::AfterValue, b']') if count >= min => out.push(stack),
                (Agg::AfterValue, b',') if count < max => {
                    stack.push(Frame::Arr { node, phase: Agg::AfterComma, count });
                    out.push(stack);
                }
                (Agg::AfterOpen | Agg::AfterComma, _) if count < max => {
                    stack.push(Frame::Arr { node, phase: Agg::AfterValue, count: count + 1 });
                    stack.push(Frame::Value(items));
                    feed(g, stack, b, out);
                }
                _ => {}
            }
        }
    }
}

/// The frames a value of `node` may start with (before its first byte).
fn starts(g: &JsonGrammar, node: NodeId) -> Vec<Frame> {
    let string = |min, max: Option<u32>| Frame::Str { esc: Esc::Open, len: 0, min, max: max.unwrap_or(u32::MAX) };
    let num = Frame::Num { node, phase: Num::Start, neg: false, value: 0, digits: 0 };
    match g.node(node) {
        Node::Any => {
            let mut v = vec![Frame::AnyObj { phase: Agg::Open }, Frame::Arr { node: ANY, phase: Agg::Open, count: 0 }];
            v.push(string(0, None));
            v.push(num);
            v.extend(KEYWORDS.map(|lit| Frame::Lit { lit, pos: 0 }));
            v
        }
        Node::AnyObject => vec![Frame::AnyObj { phase: Agg::Open }],
        Node::Object(_) => vec![Frame::Obj { node, phase: Agg::Open, next: 0 }],
        Node::Array { .. } => vec![Frame::Arr { node, phase: Agg::Open, count: 0 }],
        Node::String { min, max } => vec![string(*min, *max)],
        Node::Integer { .. } | Node::Number => vec![num],
        Node::Literals(lits) => lits.iter().map(|&lit| Frame::Lit { lit, pos: 0 }).collect(),
        Node::AnyOf(ids) => ids.iter().flat_map(|&id| starts(g, id)).collect(),
        // `Seq` is only ever the root, expanded by `feed`; `Pending` is never walked.
        Node::Seq(_) | Node::Pending => Vec::new(),
    }
}

/// A string's next phase after `b`: `None` if `b` is refused, `Some(None)` if the string closed.
#[allow(clippy::option_option)]
fn string_byte(esc: Esc, len: u32, min: u32, max: u32, b: u8) -> Option<Option<(Esc, u32)>> {
    match esc {
        Esc::Open => (b == b'"').then_some(Some((Esc::None, 0))),
        Esc::None => match b {
            b'"' => (len >= min).then_some(None),
            b'\\' => (len < max).then_some(Some((Esc::Backslash, len + 1))),
            0..=0x1f => None,
            // A continuation byte does not start a character.
            0x80..=0xbf => Some(Some((Esc::None, len))),
            _ => (len < max).then_some(Some((Esc::None, len + 1))),
        },
        Esc::Backslash => match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(Some((Esc::None, len))),
            b'u' => Some(Some((Esc::Hex(4), len))),
            _ => None,
        },
        Esc::Hex(n) => b.is_ascii_hexdigit().then_some(Some((if n > 1 { Esc::Hex(n - 1) } else { Esc::None }, len))),
    }
}

fn bounds(g: &JsonGrammar, node: NodeId) -> (bool, Option<i64>, Option<i64>) {
    match g.node(node) {
        Node::Integer { min, max } => (true, *min, *max),
        _ => (false, None, None),
    }
}

fn num_byte(g: &JsonGrammar, node: NodeId, phase: Num, neg: bool, value: i64, digits: u8, b: u8) -> Option<Frame> {
    let (integer, _, _) = bounds(g, node);
    let frame = |phase, neg, value, digits| Frame::Num { node, phase, neg, value, digits };
    let d = i64::from(b.wrapping_sub(b'0'));
    let next = match (phase, b) {
        (Num::Start, b'-') => frame(Num::Minus, true, 0, 0),
        (Num::Start, b'0') => frame(Num::Zero, neg, 0, 1),
        // `-0` is a float to most parsers, so an integer never starts with it.
        (Num::Minus, b'0') if !integer => frame(Num::Zero, neg, 0, 1),
        (Num::Start | Num::Minus, b'1'..=b'9') => frame(Num::Int, neg, d, 1),
        (Num::Int, b'0'..=b'9') if digits < MAX_INT_DIGITS => frame(Num::Int, neg, value * 10 + d, digits + 1),
        (Num::Zero | Num::Int, b'.') if !integer => frame(Num::Dot, neg, value, 0),
        (Num::Dot | Num::Frac, b'0'..=b'9') if digits < MAX_FRAC_DIGITS => frame(Num::Frac, neg, value, digits + 1),
        _ => return None,
    };
    feasible(g, &next).then_some(next)
}

/// Whether an integer frame can still end inside its bounds.
fn feasible(g: &JsonGrammar, f: &Frame) -> bool {
    let Frame::Num { node, phase, neg, value, digits } = *f else { return true };
    let (integer, min, max) = bounds(g, node);
    if !integer {
        return true;
    }
    let (lo, hi) = (min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX));
    let hits = |a: i64, b: i64| {
        let (a, b) = if neg { (-b, -a) } else { (a, b) };
        a <= hi && b >= lo
    };
    match phase {
        Num::Start => {
            let big = 10i64.pow(u32::from(MAX_INT_DIGITS)) - 1;
            (0 <= hi && big >= lo) || (-big <= hi && -1 >= lo)
        }
        Num::Minus => hits(1, 10i64.pow(u32::from(MAX_INT_DIGITS)) - 1),
        Num::Zero => hits(0, 0),
        Num::Int => (0..=u32::from(MAX_INT_DIGITS - digits)).any(|k| {
            let p = 10i64.pow(k);
            hits(value * p, value * p + p - 1)
        }),
        Num::Dot | Num::Frac => true,
    }
}

fn num_accepting(g: &JsonGrammar, f: &Frame) -> bool {
    let Frame::Num { node, phase, neg, value, .. } = *f else { return false };
    if !matches!(phase, Num::Zero | Num::Int | Num::Frac) {
        return false;
    }
    let (_, min, max) = bounds(g, node);
    let v = if neg { -value } else { value };
    min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
}

fn object_byte(g: &JsonGrammar, mut stack: Stack, node: NodeId, phase: Agg, next: u32, b: u8, out: &mut Vec<Stack>) {
    let Node::Object(props) = g.node(node) else { return };
    let rest = &props[next as usize..];
    let none_required = |upto: usize| !rest[..upto].iter().any(|p| p.required);
    match (phase, b) {
        (Agg::Open, b'{') => {
            stack.push(Frame::Obj { node, phase: Agg::AfterOpen, next });
            out.push(stack);
        }
        (Agg::AfterOpen | Agg::AfterValue, b'}') if none_required(rest.len()) => out.push(stack),
        (Agg::AfterValue, b',') if !rest.is_empty() => {
            stack.push(Frame::Obj { node, phase: Agg::AfterComma, next });
            out.push(stack);
        }
        (Agg::AfterOpen | Agg::AfterComma, b'"') => {
            for (i, p) in rest.iter().enumerate() {
                let mut s = stack.clone();
                s.push(Frame::Obj { node, phase: Agg::AfterValue, next: next + i as u32 + 1 });
                s.push(Frame::Value(p.value));
                s.push(Frame::Lit { lit: p.key, pos: 1 });
                out.push(s);
                if p.required {
                    break;
                }
            }
        }
        _ => {}
    }
}
