//! TEMPORARY stub (replaced by helper's sampler).
#![allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SamplingParams { pub temperature: f32, pub seed: Option<u64> }
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplingError { #[error("invalid sampling parameter {field}: {reason}")] Invalid { field: &'static str, reason: String } }
pub struct Sampler;
pub fn top2_gap(_l: &[f32]) -> f32 { 0.0 }
pub fn argmax(l: &[f32]) -> i32 { let mut b=0; for (i,&v) in l.iter().enumerate() { if v > l[b] { b=i; } } b as i32 }
