//! `Batch`: the tokens one engine step decodes, possibly from several sequences at once.

use crate::{SeqId, TokenId};

/// One token of a batch: which sequence, where, and whether its logits are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRow {
    /// Sequence the token belongs to.
    pub seq: SeqId,
    /// Token id.
    pub token: TokenId,
    /// Position of the token in its sequence (0-based).
    pub pos: u32,
    /// Whether the engine must keep the logits of this row.
    pub logits: bool,
}

/// The rows of one decode call. Row indices are what [`crate::Engine::logits`] takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    rows: Vec<BatchRow>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one token and returns its row index.
    pub fn push(&mut self, seq: SeqId, token: TokenId, pos: u32, logits: bool) -> usize {
        self.rows.push(BatchRow { seq, token, pos, logits });
        self.rows.len() - 1
    }

    /// Appends `tokens` of `seq` at consecutive positions from `start`; only the last row gets logits
    /// when `logits_last` is set. Returns the row index of the last token, if any.
    pub fn push_span(&mut self, seq: SeqId, tokens: &[TokenId], start: u32, logits_last: bool) -> Option<usize> {
        let n = tokens.len();
        for (i, &token) in tokens.iter().enumerate() {
            let last = i + 1 == n;
            self.push(seq, token, start + i as u32, last && logits_last);
        }
        n.checked_sub(1).map(|_| self.rows.len() - 1)
    }

    /// All rows in order.
    pub fn rows(&self) -> &[BatchRow] {
        &self.rows
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there is nothing to decode.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Removes every row, keeping the allocation.
    pub fn clear(&mut self) {
        self.rows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_span_marks_only_last_row_for_logits() {
        let mut b = Batch::new();
        assert_eq!(b.push_span(3, &[10, 11, 12], 5, true), Some(2));
        assert_eq!(
            b.rows().iter().map(|r| (r.pos, r.logits)).collect::<Vec<_>>(),
            vec![(5, false), (6, false), (7, true)]
        );
        assert_eq!(b.push_span(4, &[], 0, true), None);
        assert_eq!(b.len(), 3);
    }
}
