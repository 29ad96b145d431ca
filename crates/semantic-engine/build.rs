//! Records what the engine was compiled for, so `semantic info` can say which ISA a binary targets:
//! the target CPU from RUSTFLAGS (llama-cpp-sys-2 builds ggml with `-march=native` for `native`,
//! with `-march=CPU` and explicit GGML_* features otherwise) and the C flags ggml saw.

fn main() {
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let cpu = rustflags
        .split('\x1f')
        .find_map(|f| f.split("target-cpu=").nth(1).map(str::to_owned))
        .unwrap_or_else(|| "generic".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let cflags_var = format!("CFLAGS_{}", target.replace('-', "_"));
    let cflags = std::env::var(&cflags_var).or_else(|_| std::env::var("CFLAGS")).unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    println!("cargo:rustc-env=SEMANTIC_TARGET_CPU={cpu}");
    println!("cargo:rustc-env=SEMANTIC_TARGET_FEATURES={features}");
    println!("cargo:rustc-env=SEMANTIC_GGML_CFLAGS={}", cflags.trim());
    println!("cargo:rerun-if-env-changed={cflags_var}");
    println!("cargo:rerun-if-env-changed=CFLAGS");
    println!("cargo:rerun-if-changed=build.rs");
}
