//! The KV cache element types and the flash-attention mode: closed sets, parsed once (flags, env,
//! TOML) into these enums. The single definition: the engine re-exports them and maps them to
//! llama.cpp's types; this crate knows no llama.cpp.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Element type of one half (K or V) of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvElem {
    /// 16-bit floats (llama.cpp's default).
    F16,
    /// 8-bit blocks of 32 with an f16 scale (1.06 bytes per value).
    Q8_0,
    /// 5-bit blocks of 32 with an f16 scale and minimum (0.75 bytes per value).
    Q5_1,
    /// 5-bit blocks of 32 with an f16 scale (0.69 bytes per value).
    Q5_0,
    /// 4-bit blocks of 32 with an f16 scale and minimum (0.63 bytes per value).
    Q4_1,
    /// 4-bit blocks of 32 with an f16 scale (0.56 bytes per value).
    Q4_0,
    /// 4-bit non-linear blocks of 32 (0.56 bytes per value).
    Iq4Nl,
}

impl KvElem {
    /// Every element type, in the order of their indexes in [`KvType::code`].
    pub const ALL: [KvElem; 7] =
        [KvElem::F16, KvElem::Q8_0, KvElem::Q5_1, KvElem::Q5_0, KvElem::Q4_1, KvElem::Q4_0, KvElem::Iq4Nl];

    /// The name used in flags, config and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            KvElem::F16 => "f16",
            KvElem::Q8_0 => "q8_0",
            KvElem::Q5_1 => "q5_1",
            KvElem::Q5_0 => "q5_0",
            KvElem::Q4_1 => "q4_1",
            KvElem::Q4_0 => "q4_0",
            KvElem::Iq4Nl => "iq4_nl",
        }
    }

    fn index(self) -> u8 {
        Self::ALL.iter().position(|&e| e == self).unwrap_or(0) as u8
    }
}

/// "f16, q8_0, ..., iq4_nl".
fn elem_names() -> String {
    KvElem::ALL.map(KvElem::as_str).join(", ")
}

impl FromStr for KvElem {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let s = match s.as_str() {
            "q8" => "q8_0",
            "q4" => "q4_0",
            other => other,
        };
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown KV element type {s:?} (expected one of {})", elem_names()))
    }
}

/// Element types of the KV cache: one for K and one for V (written `k/v`, or one name for both).
/// Quantized types shrink hot memory and disk snapshots; K is the more sensitive half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KvType {
    /// Type of the K cache.
    pub k: KvElem,
    /// Type of the V cache.
    pub v: KvElem,
}

impl KvType {
    /// f16 for both halves (llama.cpp's default).
    pub const F16: KvType = KvType::same(KvElem::F16);
    /// q8_0 for both halves.
    pub const Q8_0: KvType = KvType::same(KvElem::Q8_0);
    /// q4_0 for both halves.
    pub const Q4_0: KvType = KvType::same(KvElem::Q4_0);

    /// One type for K and V.
    pub const fn same(elem: KvElem) -> Self {
        Self { k: elem, v: elem }
    }

    /// True unless both halves are f16 (llama.cpp then needs flash attention).
    pub fn is_quantized(self) -> bool {
        self != Self::F16
    }

    /// Stable numeric code for file headers, below the engine's `ContextInfo::V_TRANSPOSED`: 1, 8
    /// and 4 for f16, q8_0 and q4_0 in both halves (the codes of format version 1), else
    /// `0x40 | k << 3 | v` with each half's index in [`KvElem::ALL`].
    pub fn code(self) -> u8 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 8,
            Self::Q4_0 => 4,
            Self { k, v } => 0x40 | k.index() << 3 | v.index(),
        }
    }

    /// Inverse of [`KvType::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::F16),
            8 => Some(Self::Q8_0),
            4 => Some(Self::Q4_0),
            0x40..=0x7f => {
                let k = *KvElem::ALL.get(usize::from(code >> 3 & 7))?;
                let v = *KvElem::ALL.get(usize::from(code & 7))?;
                let t = Self { k, v };
                (t.code() == code).then_some(t)
            }
            _ => None,
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.k == self.v {
            f.write_str(self.k.as_str())
        } else {
            write!(f, "{}/{}", self.k.as_str(), self.v.as_str())
        }
    }
}

impl FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let halves = match s.split_once('/') {
            Some((k, v)) => k.parse().and_then(|k| Ok(Self { k, v: v.parse()? })),
            None => s.parse().map(Self::same),
        };
        halves
            .map_err(|_| format!("{s:?} (expected one of {} for both K and V, or K/V such as q5_1/q4_0)", elem_names()))
    }
}

impl TryFrom<String> for KvType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KvType> for String {
    fn from(t: KvType) -> String {
        t.to_string()
    }
}

/// Flash-attention policy. llama.cpp needs it for a quantized V cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FlashAttention {
    /// Off for an f16 cache, on for a quantized one (which needs it). Measured with llama-bench on
    /// the CPU backend (2 threads, SmolLM2): without flash attention a 24-token prefill after 2,048
    /// cached tokens runs 1.7x faster, decode there 1.15x, a 512-token prefill 1.2x; llama.cpp's
    /// own "auto" would turn it on.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off (rejected with a quantized KV type).
    Off,
}

impl FlashAttention {
    /// The name used in flags and config.
    pub fn as_str(self) -> &'static str {
        match self {
            FlashAttention::Auto => "auto",
            FlashAttention::On => "on",
            FlashAttention::Off => "off",
        }
    }
}

impl fmt::Display for FlashAttention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FlashAttention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(FlashAttention::Auto),
            "on" => Ok(FlashAttention::On),
            "off" => Ok(FlashAttention::Off),
            _ => Err(format!("{s:?} (expected auto, on or off)")),
        }
    }
}

impl TryFrom<String> for FlashAttention {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<FlashAttention> for String {
    fn from(f: FlashAttention) -> String {
        f.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's `ContextInfo::V_TRANSPOSED` flag, which no code may use.
    const V_TRANSPOSED: u16 = 0x80;

    #[test]
    fn kv_type_names_and_codes_round_trip() {
        let mut codes = std::collections::HashSet::new();
        for k in KvElem::ALL {
            for v in KvElem::ALL {
                let t = KvType { k, v };
                assert_eq!(t.to_string().parse::<KvType>(), Ok(t));
                assert_eq!(KvType::from_code(t.code()), Some(t));
                assert!(u16::from(t.code()) & V_TRANSPOSED == 0 && codes.insert(t.code()));
            }
        }
        assert_eq!((KvType::F16.code(), KvType::Q8_0.code(), KvType::Q4_0.code()), (1, 8, 4), "version-1 codes");
        assert_eq!("q5_1/q4_0".parse::<KvType>(), Ok(KvType { k: KvElem::Q5_1, v: KvElem::Q4_0 }));
        assert_eq!("Q8".parse::<KvType>(), Ok(KvType::Q8_0));
        for bad in ["bf16", "q5_1/", "/q4_0", "q4_0/q4_0/q4_0", "", "q5_2", "q8_0/q4_0/q4_0"] {
            let err = bad.parse::<KvType>().unwrap_err();
            assert!(err.contains("expected one of f16, q8_0") && err.contains("q5_1/q4_0"), "{bad:?}: {err}");
        }
        assert_eq!(KvType::from_code(0), None);
        assert_eq!(KvType::from_code(0x40 | 7 << 3), None);
    }

    #[test]
    fn flash_attention_is_auto_on_or_off_in_any_case() {
        for (text, mode) in [("auto", FlashAttention::Auto), ("ON", FlashAttention::On), ("Off", FlashAttention::Off)] {
            assert_eq!(text.parse::<FlashAttention>(), Ok(mode));
            assert_eq!(mode.to_string().parse::<FlashAttention>(), Ok(mode));
        }
        let err = "sometimes".parse::<FlashAttention>().unwrap_err();
        assert!(err.contains("expected auto, on or off"), "{err}");
    }
}
