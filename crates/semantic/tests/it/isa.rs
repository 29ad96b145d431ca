//! The built binary never contains or runs ggml's AMX kernels: on AMX CPUs (Sapphire Rapids and
//! later) they segfault at the first matrix multiply (llama.cpp issue 20824). Checked on any CPU,
//! from what the binary says it was built with and from its machine code, so a machine without
//! AMX catches a build that turns them back on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::harness::model_path;

fn info() -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_semantic")).arg("info").arg("--model").arg(model_path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// How many times each mnemonic appears in the disassembly of `exe`, reading objdump's output
/// as a stream (it is hundreds of megabytes).
fn count_instructions(exe: &str, mnemonics: &[&str]) -> Vec<usize> {
    let mut child = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", exe])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("objdump (binutils, installed by scripts/setup)");
    let mut counts = vec![0; mnemonics.len()];
    let mut lines = 0usize;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        lines += 1;
        // "  4a1f30:\tldtilecfg (%rax)": the mnemonic follows the first tab.
        let Some(insn) = line.split('\t').nth(1) else { continue };
        let mnemonic = insn.split_whitespace().next().unwrap_or("");
        for (i, m) in mnemonics.iter().enumerate() {
            counts[i] += usize::from(mnemonic == *m);
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(lines > 100_000, "objdump printed only {lines} lines");
    counts
}

#[test]
fn the_binary_has_no_amx_code() {
    let info = info();
    let ggml = info.lines().find(|l| l.starts_with("ggml:")).expect("`semantic info` prints ggml's system line");
    assert!(ggml.contains("CPU :"), "{ggml}");
    assert!(!ggml.contains("AMX_INT8 = 1"), "ggml was built with AMX: {ggml}");
    let built = info.lines().find(|l| l.starts_with("built for:")).expect("`semantic info` prints the build's ISA");
    let simd = built.split("SIMD:").nth(1).and_then(|s| s.split(';').next()).expect("a SIMD list");
    assert!(!simd.contains("amx"), "the Rust side was built for AMX: {built}");
    if cfg!(target_arch = "x86_64") {
        assert!(built.contains("-mno-amx-int8"), "ggml was not built with AMX switched off: {built}");
    }
    if cfg!(target_arch = "x86_64") {
        // A real x86 line, so the check above looked at something: every x86-64-v3 build has AVX2.
        assert!(ggml.contains("AVX2 = 1"), "{ggml}");
        let exe = env!("CARGO_BIN_EXE_semantic");
        let [ldtilecfg, tdpbssd, tileloadd, vaddps] =
            count_instructions(exe, &["ldtilecfg", "tdpbssd", "tileloadd", "vaddps"])[..]
        else {
            unreachable!()
        };
        assert_eq!((ldtilecfg, tdpbssd, tileloadd), (0, 0, 0), "AMX tile instructions in {exe}");
        // The scan itself works: SIMD code is there to be found.
        assert!(vaddps > 0, "no vaddps found: the disassembly was not read");
    }
}
