//! What this binary was compiled for: target CPU, ISA features, ggml's C flags and GPU backend.
//! Recorded by the crate's build script; printed by `semantic info`. Knows no llama.cpp.

/// `target-cpu` the build used (`native` by default, `.cargo/config.toml`; `x86-64-v3` for
/// `scripts/build-portable`), or `generic` when none was given.
pub const TARGET_CPU: &str = env!("SEMANTIC_TARGET_CPU");

/// Rust's target features of the build, comma-separated (what the compiler may assume the CPU has).
pub const TARGET_FEATURES: &str = env!("SEMANTIC_TARGET_FEATURES");

/// Extra C/C++ flags ggml was compiled with (the AMX switch-off, `.cargo/config.toml`).
pub const GGML_CFLAGS: &str = env!("SEMANTIC_GGML_CFLAGS");

/// The GPU backend compiled in, if any (cargo features `cuda`, `vulkan`, `metal`).
pub const GPU_BACKEND: Option<&str> = if cfg!(feature = "cuda") {
    Some("cuda")
} else if cfg!(feature = "vulkan") {
    Some("vulkan")
} else if cfg!(feature = "metal") {
    Some("metal")
} else {
    None
};

/// One line: `target-cpu=native; x86 SIMD: avx2, fma, ...; ggml C flags: ...; GPU: none`.
pub fn summary() -> String {
    const SIMD: [&str; 14] = [
        "sse4.2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avxvnni",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vnni",
        "avx512bf16",
        "amx-tile",
        "amx-int8",
    ];
    let simd: Vec<&str> = TARGET_FEATURES.split(',').filter(|f| SIMD.contains(f)).collect();
    let simd = if simd.is_empty() { "none".to_owned() } else { simd.join(", ") };
    let cflags = if GGML_CFLAGS.is_empty() { "none" } else { GGML_CFLAGS };
    format!(
        "target-cpu={TARGET_CPU}; SIMD: {simd}; ggml C flags: {cflags}; GPU backend: {}",
        GPU_BACKEND.unwrap_or("none")
    )
}
