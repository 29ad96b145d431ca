//! `GgufInfo`: what a GGUF file says about its model (architecture, context, size, quantization,
//! chat template, sliding window), read from the header alone without loading the weights.
//! Owns parsing the header's key-value pairs and tensor infos, bounded against hostile files;
//! does not own loading (llama.cpp does) or fingerprints (`fingerprint.rs`).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::EngineError;

/// Longest string the header may hold (a chat template or a token; 16 MiB).
const MAX_STRING: u64 = 16 << 20;
/// Most elements of one array (a vocabulary) and most key-value pairs or tensors.
const MAX_COUNT: u64 = 1 << 24;

/// Facts from a GGUF header.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GgufInfo {
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// `general.architecture` (e.g. `llama`, `gemma3`).
    pub architecture: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// `<arch>.context_length`: the training context.
    pub context_length: Option<u64>,
    /// `<arch>.block_count`: layers.
    pub block_count: Option<u64>,
    /// `<arch>.attention.sliding_window`: the window of the sliding-window layers, if any.
    pub sliding_window: Option<u64>,
    /// `general.file_type` as llama.cpp names it (`Q4_1`, `Q4_K_M`, ...), if present.
    pub quantization: Option<String>,
    /// Whether `tokenizer.chat_template` is present.
    pub has_chat_template: bool,
    /// Parameters: the element count of every tensor.
    pub n_params: u64,
    /// Tensors in the file.
    pub n_tensors: u64,
}

impl GgufInfo {
    /// Reads the header of `path`. A file that is not GGUF, or is cut short, is an error naming it.
    pub fn read(path: &Path) -> Result<Self, EngineError> {
        let file = File::open(path).map_err(|source| EngineError::ModelIo { path: path.to_owned(), source })?;
        Self::parse(&mut BufReader::with_capacity(1 << 16, file))
            .map_err(|reason| EngineError::ModelLoad { path: path.to_owned(), reason })
    }

    /// Parses a header from `input`.
    pub fn parse(input: &mut impl Read) -> Result<Self, String> {
        let mut r = Reader { input };
        let magic = r.bytes(4)?;
        if magic != b"GGUF" {
            return Err("not a GGUF file (bad magic)".into());
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!("unsupported GGUF version {version}"));
        }
        let n_tensors = r.count("tensors")?;
        let n_kv = r.count("key-value pairs")?;
        let mut info = GgufInfo { version, n_tensors, ..Self::default() };
        let mut arch_keys: Vec<(String, Value)> = Vec::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let kind = r.u32()?;
            let value = r.value(kind)?;
            match key.as_str() {
                "general.architecture" => info.architecture = value.text().unwrap_or_default(),
                "general.name" => info.name = value.text(),
                "general.file_type" => info.quantization = value.int().map(file_type_name),
                "tokenizer.chat_template" => info.has_chat_template = value.text().is_some_and(|t| !t.is_empty()),
                _ => arch_keys.push((key, value)),
            }
        }
        let prefix = format!("{}.", info.architecture);
        for (key, value) in arch_keys {
            match key.strip_prefix(&prefix) {
                Some("context_length") => info.context_length = value.int(),
                Some("block_count") => info.block_count = value.int(),
                Some("attention.sliding_window") => info.sliding_window = value.int().filter(|&w| w > 0),
                _ => {}
            }
        }
        if info.architecture.is_empty() {
            return Err("no general.architecture".into());
        }
        for _ in 0..n_tensors {
            r.string()?;
            let n_dims = r.u32()?;
            if n_dims > 8 {
                return Err(format!("a tensor with {n_dims} dimensions"));
            }
            let mut elements: u64 = 1;
            for _ in 0..n_dims {
                elements = elements.saturating_mul(r.u64()?);
            }
            r.u32()?; // element type
            r.u64()?; // offset
            info.n_params = info.n_params.saturating_add(elements);
        }
        Ok(info)
    }
}

/// One header value, kept only as far as the fields above need it.
enum Value {
    Int(u64),
    Text(String),
    Other,
}

impl Value {
    fn int(&self) -> Option<u64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}

struct Reader<'a, R: Read> {
    input: &'a mut R,
}

impl<R: Read> Reader<'_, R> {
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let read = self.input.by_ref().take(n).read_to_end(&mut out).map_err(|e| e.to_string())?;
        if read as u64 != n {
            return Err("the header is cut short".into());
        }
        Ok(out)
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let skipped = io::copy(&mut self.input.by_ref().take(n), &mut io::sink()).map_err(|e| e.to_string())?;
        if skipped != n {
            return Err("the header is cut short".into());
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        self.input.read_exact(&mut out).map_err(|_| "the header is cut short".to_string())?;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array::<8>().map(u64::from_le_bytes)
    }

    fn count(&mut self, what: &str) -> Result<u64, String> {
        let n = self.u64()?;
        if n > MAX_COUNT {
            return Err(format!("{n} {what} (at most {MAX_COUNT})"));
        }
        Ok(n)
    }

    fn string_len(&mut self) -> Result<u64, String> {
        let n = self.u64()?;
        if n > MAX_STRING {
            return Err(format!("a string of {n} bytes (at most {MAX_STRING})"));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.string_len()?;
        String::from_utf8(self.bytes(n)?).map_err(|_| "a string that is not UTF-8".into())
    }

    /// Reads one value of GGUF type `kind`; arrays are skipped.
    fn value(&mut self, kind: u32) -> Result<Value, String> {
        Ok(match kind {
            0 | 1 | 7 => Value::Int(u64::from(self.array::<1>()?[0])),
            2 | 3 => Value::Int(u64::from(u16::from_le_bytes(self.array()?))),
            4 => Value::Int(u64::from(self.u32()?)),
            5 => Value::Int(u64::try_from(i32::from_le_bytes(self.array()?)).unwrap_or(0)),
            10 => Value::Int(self.u64()?),
            11 => Value::Int(u64::try_from(i64::from_le_bytes(self.array()?)).unwrap_or(0)),
            6 => {
                self.skip(4)?;
                Value::Other
            }
            12 => {
                self.skip(8)?;
                Value::Other
            }
            8 => Value::Text(self.string()?),
            9 => {
                let element = self.u32()?;
                let n = self.count("array elements")?;
                match element {
                    8 => {
                        for _ in 0..n {
                            let len = self.string_len()?;
                            self.skip(len)?;
                        }
                    }
                    9 => return Err("nested arrays".into()),
                    other => self.skip(n * scalar_size(other)?)?,
                }
                Value::Other
            }
            other => return Err(format!("unknown value type {other}")),
        })
    }
}

fn scalar_size(kind: u32) -> Result<u64, String> {
    match kind {
        0 | 1 | 7 => Ok(1),
        2 | 3 => Ok(2),
        4..=6 => Ok(4),
        10..=12 => Ok(8),
        other => Err(format!("unknown array element type {other}")),
    }
}

/// llama.cpp's name for a `general.file_type` (`llama_ftype`).
fn file_type_name(code: u64) -> String {
    let name = match code {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4",
        other => return format!("type {other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small GGUF header writer for the tests.
    #[derive(Default)]
    struct Header {
        kv: Vec<u8>,
        n_kv: u64,
        tensors: Vec<u8>,
        n_tensors: u64,
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    impl Header {
        fn text(mut self, key: &str, value: &str) -> Self {
            string(&mut self.kv, key);
            self.kv.extend_from_slice(&8u32.to_le_bytes());
            string(&mut self.kv, value);
            self.n_kv += 1;
            self
        }
        fn u32(mut self, key: &str, value: u32) -> Self {
            string(&mut self.kv, key);
            self.kv.extend_from_slice(&4u32.to_le_bytes());
            self.kv.extend_from_slice(&value.to_le_bytes());
            self.n_kv += 1;
            self
        }
        fn tokens(mut self, n: usize) -> Self {
            string(&mut self.kv, "tokenizer.ggml.tokens");
            self.kv.extend_from_slice(&9u32.to_le_bytes());
            self.kv.extend_from_slice(&8u32.to_le_bytes());
            self.kv.extend_from_slice(&(n as u64).to_le_bytes());
            for i in 0..n {
                string(&mut self.kv, &format!("tok{i}"));
            }
            self.n_kv += 1;
            self
        }
        fn tensor(mut self, dims: &[u64]) -> Self {
            string(&mut self.tensors, &format!("t{}", self.n_tensors));
            self.tensors.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                self.tensors.extend_from_slice(&d.to_le_bytes());
            }
            self.tensors.extend_from_slice(&0u32.to_le_bytes());
            self.tensors.extend_from_slice(&0u64.to_le_bytes());
            self.n_tensors += 1;
            self
        }
        fn bytes(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&self.n_tensors.to_le_bytes());
            out.extend_from_slice(&self.n_kv.to_le_bytes());
            out.extend_from_slice(&self.kv);
            out.extend_from_slice(&self.tensors);
            out
        }
    }

    fn parse(bytes: &[u8]) -> Result<GgufInfo, String> {
        GgufInfo::parse(&mut &bytes[..])
    }

    #[test]
    fn reads_the_facts_a_registry_lists() {
        let header = Header::default()
            .text("general.architecture", "gemma3")
            .text("general.name", "Gemma 3 270m")
            .u32("gemma3.context_length", 32768)
            .u32("gemma3.block_count", 18)
            .u32("gemma3.attention.sliding_window", 512)
            .u32("llama.context_length", 7) // another architecture's key: ignored
            .u32("general.file_type", 15)
            .tokens(300)
            .text("tokenizer.chat_template", "{{ messages }}")
            .tensor(&[640, 1024])
            .tensor(&[640]);
        let info = parse(&header.bytes()).expect("parses");
        assert_eq!(info.architecture, "gemma3");
        assert_eq!(info.name.as_deref(), Some("Gemma 3 270m"));
        assert_eq!((info.context_length, info.block_count, info.sliding_window), (Some(32768), Some(18), Some(512)));
        assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
        assert!(info.has_chat_template);
        assert_eq!((info.n_params, info.n_tensors), (640 * 1024 + 640, 2));
    }

    #[test]
    fn hostile_or_truncated_headers_are_errors_not_panics() {
        let good = Header::default().text("general.architecture", "llama").tensor(&[4, 4]).bytes();
        assert!(parse(&good).is_ok());
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse(b"GGML\x03\0\0\0").unwrap_err().contains("magic"));
        let mut huge = good.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // key-value count
        assert!(parse(&huge).unwrap_err().contains("at most"));
        let no_arch = Header::default().text("general.name", "x").bytes();
        assert!(parse(&no_arch).unwrap_err().contains("architecture"));
    }
}
