//! The offline tools (`semantic agents ...`, `semantic cache verify`) on synthetic cache directories
//! made with `DiskStore::write` (no model; a few bytes stand in for a GGUF where `--model` is
//! needed), and kill -9 in the middle of snapshot writes.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use semantic_engine::Fingerprint;
use semantic_memory::{read_header, read_snapshot, AgentId, Compat, DiskStore, Namespace, SnapshotHeader};

use crate::harness::tempdir::TempDir;

/// What a finished `semantic` command left.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `semantic ARGS --cache-dir DIR`, with no `SEMANTIC_*` setting inherited from the environment.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_semantic"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SEMANTIC_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).arg("--cache-dir").arg(dir).env("SEMANTIC_LOG", "warn");
    cmd
}

fn semantic(dir: &Path, args: &[&str]) -> Run {
    let out = command(dir, args).output().expect("run the semantic binary");
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ semantic {}\n{}{}", args.join(" "), run.stdout, run.stderr);
    run
}

fn succeeds(dir: &Path, args: &[&str]) -> String {
    let run = semantic(dir, args);
    assert!(run.ok, "semantic {args:?} failed: {}", run.stderr);
    run.stdout
}

/// Runs a command that must fail and returns its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let run = semantic(dir, args);
    assert!(!run.ok, "semantic {args:?} should fail; stdout: {}", run.stdout);
    run.stderr
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn header(ns: &str, agent: &str, tokens: Vec<i32>, fingerprint: [u8; 32]) -> SnapshotHeader {
    SnapshotHeader {
        namespace: Namespace::parse(ns).unwrap(),
        agent: AgentId::parse(agent).unwrap(),
        fingerprint,
        state_layout: 0x101, // f16, per-sequence streams
        n_ctx: 4096,
        tokens,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_123_000,
        pinned: false,
        payload_len: 0,
        header_crc: 0,
        encrypted: false,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// A few bytes that stand in for a GGUF, and their fingerprint.
fn fake_model(dir: &Path, name: &str) -> (PathBuf, [u8; 32]) {
    let path = dir.join(name);
    fs::write(&path, format!("not really a model: {name}")).unwrap();
    let fp = Fingerprint::of_file(&path).unwrap().0;
    (path, fp)
}

/// The value of a `label: value` line of `semantic agents show`.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{out}")).trim()
}

/// The `ls` row of an agent, split into cells.
fn ls_row(out: &str, agent: &str) -> Option<Vec<String>> {
    out.lines().skip(1).map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>()).find(|c| c[1] == agent)
}

fn tmp_files(root: &Path) -> Vec<PathBuf> {
    let Ok(namespaces) = fs::read_dir(root.join("agents")) else { return Vec::new() };
    namespaces
        .flat_map(|ns| fs::read_dir(ns.unwrap().path()).into_iter().flatten())
        .map(|f| f.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

#[test]
fn agents_ls_show_pin_unpin_rm() {
    let dir = TempDir::new("offline-agents");
    let cache = dir.path();
    let store = DiskStore::open(cache).unwrap();
    let fp = [0xab; 32];
    store.write(&header("default", "alpha", (0..40).collect(), fp), &payload(1000)).unwrap();
    store.write(&header("default", "beta", vec![7, 8, 9], fp), &payload(10)).unwrap();
    store.write(&header("team-b", "gamma", vec![1], fp), &[]).unwrap();
    let alpha = store.path_for(&header("default", "alpha", vec![], fp).key());

    let ls = succeeds(cache, &["agents", "ls"]);
    assert_eq!(ls.lines().count(), 4, "header + 3 agents");
    let row = ls_row(&ls, "alpha").expect("alpha listed");
    let size = fs::metadata(&alpha).unwrap().len().to_string();
    assert_eq!(row, ["default", "alpha", "40", &size, "2023-11-14T22:15:23Z", "no", "f16", "abababababab"]);
    let team_b = succeeds(cache, &["agents", "ls", "--namespace", "team-b"]);
    assert!(ls_row(&team_b, "gamma").is_some() && ls_row(&team_b, "alpha").is_none(), "{team_b}");

    let show = succeeds(cache, &["agents", "show", "alpha"]);
    assert_eq!(field(&show, "agent:"), "default/alpha");
    assert_eq!(field(&show, "tokens:"), "40");
    assert_eq!(field(&show, "payload bytes:"), "1000");
    assert_eq!(field(&show, "first tokens:"), format!("{:?}", (0..16).collect::<Vec<i32>>()));
    assert_eq!(field(&show, "last tokens:"), format!("{:?}", (24..40).collect::<Vec<i32>>()));
    assert_eq!(field(&show, "model:"), format!("sha256:{}", "ab".repeat(32)));
    assert_eq!(field(&show, "pinned:"), "no");
    assert_eq!(field(&show, "checksums:"), "ok");
    assert!(fails(cache, &["agents", "show", "gamma"]).contains("no agent default/gamma"), "namespaces are separate");
    assert_eq!(field(&succeeds(cache, &["agents", "show", "gamma", "--namespace", "team-b"]), "tokens:"), "1");

    let (before, before_payload) =
        read_snapshot(&alpha, &Compat { fingerprint: fp, state_layout: 0x101 }, None).unwrap();
    succeeds(cache, &["agents", "pin", "alpha"]);
    let (after, after_payload) = read_snapshot(&alpha, &Compat { fingerprint: fp, state_layout: 0x101 }, None).unwrap();
    assert!(after.pinned);
    assert_eq!((after.tokens, after.updated_ms, after_payload), (before.tokens, before.updated_ms, before_payload));
    assert_eq!(ls_row(&succeeds(cache, &["agents", "ls"]), "alpha").unwrap()[5], "yes");
    assert!(succeeds(cache, &["agents", "pin", "alpha"]).contains("already pinned"));
    succeeds(cache, &["agents", "unpin", "alpha"]);
    assert!(!read_header(&alpha, None).unwrap().0.pinned);
    assert!(tmp_files(cache).is_empty());

    succeeds(cache, &["agents", "rm", "beta"]);
    assert!(ls_row(&succeeds(cache, &["agents", "ls"]), "beta").is_none());
    assert!(fails(cache, &["agents", "rm", "beta"]).contains("no agent default/beta"));
    assert!(fails(cache, &["agents", "show", "beta"]).contains("no agent default/beta"));
    assert!(fails(cache, &["agents", "pin", "beta"]).contains("no agent default/beta"));
    fails(cache, &["agents", "rm", "gamma"]);
    succeeds(cache, &["agents", "rm", "gamma", "--namespace", "team-b"]);
    fails(cache, &["agents", "rm", "a/b"]);
    assert_eq!(succeeds(cache, &["agents", "ls"]).lines().count(), 2, "only alpha left");
}

#[test]
fn agents_export_import_round_trip() {
    let dir = TempDir::new("offline-export");
    let cache = dir.path().join("cache");
    let (model, fp) = fake_model(dir.path(), "model.gguf");
    let (other_model, _) = fake_model(dir.path(), "other.gguf");
    let store = DiskStore::open(&cache).unwrap();
    let mut h = header("default", "alpha", (100..400).collect(), fp);
    h.pinned = true;
    store.write(&h, &payload(5000)).unwrap();
    let stored = store.path_for(&h.key());
    let original = fs::read(&stored).unwrap();
    let file = dir.path().join("alpha.skv");

    succeeds(&cache, &["agents", "export", "alpha", s(&file)]);
    assert_eq!(fs::read(&file).unwrap(), original, "export is the same file format, byte for byte");
    assert!(fails(&cache, &["agents", "export", "alpha", s(&file)]).contains("--force"));
    succeeds(&cache, &["agents", "export", "alpha", s(&file), "--force"]);

    succeeds(&cache, &["agents", "rm", "alpha"]);
    succeeds(&cache, &["agents", "import", s(&file)]);
    // Into the directory of the model that made it (where that model's server looks).
    let imported = DiskStore::open(&semantic_memory::model_root(&cache, &fp)).unwrap().path_for(&h.key());
    assert_eq!(fs::read(&imported).unwrap(), original, "import restores the agent exactly");
    assert!(fails(&cache, &["agents", "import", s(&file)]).contains("already exists"));
    succeeds(&cache, &["agents", "import", s(&file), "--force"]);
    succeeds(&cache, &["agents", "import", s(&file), "--force", "--model", s(&model)]);
    let err = fails(&cache, &["agents", "import", s(&file), "--force", "--model", s(&other_model)]);
    assert!(err.contains("model fingerprint differs"), "{err}");

    // A damaged file is refused and leaves the stored agent as it was.
    let mut flipped = original.clone();
    let at = flipped.len() - 100; // inside the payload
    flipped[at] ^= 0x10;
    let bad = dir.path().join("flipped.skv");
    fs::write(&bad, &flipped).unwrap();
    assert!(fails(&cache, &["agents", "import", s(&bad), "--force"]).contains("checksum mismatch"));
    fs::write(&bad, &original[..original.len() - 1]).unwrap();
    assert!(fails(&cache, &["agents", "import", s(&bad), "--force"]).contains("corrupt"));
    assert_eq!(fs::read(&imported).unwrap(), original);

    // Into a fresh cache directory.
    let fresh = dir.path().join("fresh");
    succeeds(&fresh, &["agents", "import", s(&file)]);
    let root = semantic_memory::model_root(&fresh, &fp);
    assert_eq!(fs::read(DiskStore::open(&root).unwrap().path_for(&h.key())).unwrap(), original);
    assert_eq!(field(&succeeds(&fresh, &["agents", "show", "alpha"]), "pinned:"), "yes");
}

#[test]
fn cache_verify_finds_flipped_truncated_and_foreign_files() {
    let dir = TempDir::new("offline-verify");
    let cache = dir.path().join("cache");
    let (model, fp) = fake_model(dir.path(), "model.gguf");
    let store = DiskStore::open(&cache).unwrap();
    let alpha = header("default", "alpha", (0..300).collect(), fp);
    let beta = header("default", "beta", vec![5; 20], fp);
    let gamma = header("team-b", "gamma", vec![], fp);
    for h in [&alpha, &beta, &gamma] {
        store.write(h, &payload(2000)).unwrap();
    }
    let clean = succeeds(&cache, &["cache", "verify"]);
    assert!(clean.contains("3 file(s) checked: 3 ok, 0 bad"), "{clean}");
    succeeds(&cache, &["cache", "verify", "--model", s(&model)]);

    // One flipped payload byte: the header still reads, only a full check finds it.
    let path = store.path_for(&alpha.key());
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    assert!(read_header(&path, None).is_ok());
    let run = semantic(&cache, &["cache", "verify"]);
    assert!(!run.ok);
    assert!(run.stdout.contains(&format!("BAD {}: corrupt: checksum mismatch", path.display())), "{}", run.stdout);
    assert!(run.stdout.contains("3 file(s) checked: 2 ok, 1 bad"), "{}", run.stdout);
    assert!(fails(&cache, &["agents", "show", "alpha"]).contains("damaged"));
    assert!(fails(&cache, &["agents", "pin", "alpha"]).contains("checksum mismatch"), "pin refuses a damaged file");
    store.write(&alpha, &payload(2000)).unwrap();
    succeeds(&cache, &["cache", "verify"]);

    // A truncated file.
    let path = store.path_for(&beta.key());
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
    let run = semantic(&cache, &["cache", "verify"]);
    assert!(!run.ok);
    assert!(run.stdout.contains(&format!("BAD {}: corrupt", path.display())), "{}", run.stdout);
    store.write(&beta, &payload(2000)).unwrap();

    // A valid file made by another model: fine on its own, flagged against --model.
    let foreign = header("default", "delta", vec![1, 2, 3], [9; 32]);
    store.write(&foreign, &payload(100)).unwrap();
    assert!(succeeds(&cache, &["cache", "verify"]).contains("4 file(s) checked: 4 ok, 0 bad"));
    let run = semantic(&cache, &["cache", "verify", "--model", s(&model)]);
    assert!(!run.ok);
    let path = store.path_for(&foreign.key());
    assert!(run.stdout.contains(&format!("BAD {}: foreign: model fingerprint differs", path.display())));
    assert!(run.stdout.contains("4 file(s) checked against model sha256:"), "{}", run.stdout);
    assert!(run.stdout.contains(": 3 ok, 1 bad"), "{}", run.stdout);

    // Not a cache directory at all.
    assert!(fails(&dir.path().join("nowhere"), &["cache", "verify"]).contains("no agents/ directory"));
}

#[test]
fn read_only_commands_create_and_sweep_nothing() {
    let dir = TempDir::new("offline-read-only");
    let empty = dir.path().join("empty");
    let run = semantic(&empty, &["agents", "ls"]);
    assert!(run.ok && run.stdout.is_empty() && run.stderr.contains("no agents"), "{}", run.stderr);
    assert!(!empty.exists(), "ls does not create the cache directory");

    let cache = dir.path().join("cache");
    let store = DiskStore::open(&cache).unwrap();
    let h = header("default", "alpha", vec![1, 2, 3], [1; 32]);
    store.write(&h, &payload(64)).unwrap();
    // A write a running server has in flight.
    let in_flight = cache.join("agents/default/alpha.skv.00000000000000ff.tmp");
    fs::write(&in_flight, b"partial").unwrap();
    succeeds(&cache, &["agents", "ls"]);
    succeeds(&cache, &["agents", "show", "alpha"]);
    succeeds(&cache, &["cache", "verify"]);
    succeeds(&cache, &["agents", "export", "alpha", s(&dir.path().join("out.skv"))]);
    assert!(in_flight.exists());
}

/// Kills `child`, waits, and returns what it wrote to stderr (for failure messages).
fn kill_and_collect(mut child: Child) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    err
}

#[test]
fn kill_9_during_snapshot_writes_never_leaves_a_file_that_loads_wrong() {
    const ROUNDS: usize = 40;
    let dir = TempDir::new("offline-kill9");
    // The seed is printed so a failure can be replayed.
    let seed: u64 = rand::random();
    eprintln!("kill -9 test seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut in_flight, mut files_checked) = (0, 0);
    for round in 0..ROUNDS {
        // The writer prints a line before and after each write: killing after an odd number of
        // lines lands inside a write, after an even number between two (or at start-up, for 0).
        let progress = rng.gen_range(0..12);
        let child_seed = rng.gen::<u64>().to_string();
        let mut child = command(dir.path(), &["cache", "stress-write", "--count", "100000", "--seed", &child_seed])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the semantic binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        for _ in 0..progress {
            if let Err(e) = rx.recv_timeout(Duration::from_secs(60)) {
                let stderr = kill_and_collect(child);
                panic!("round {round}: no progress line from stress-write ({e}); stderr: {stderr}");
            }
        }
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: the writer finished before the kill");
        drop(rx);
        reader.join().unwrap();

        let leftover = tmp_files(dir.path()).len();
        in_flight += usize::from(leftover > 0);
        let store = DiskStore::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: open after kill -9: {e}"));
        assert_eq!(store.swept(), leftover, "round {round}");
        assert_eq!(tmp_files(dir.path()), Vec::<PathBuf>::new(), "round {round}: temp files survive open");
        let report = store.scan();
        assert!(report.rejected.is_empty(), "round {round}: damaged files after kill -9: {:?}", report.rejected);
        for (h, len) in &report.entries {
            let compat = Compat { fingerprint: h.fingerprint, state_layout: h.state_layout };
            let (full, data) = store
                .read(&h.key(), &compat)
                .unwrap_or_else(|e| panic!("round {round}: {} fails to load: {e}", h.key()));
            assert_eq!(&full, h, "round {round}");
            assert_eq!(
                (data.len() as u64, fs::metadata(store.path_for(&h.key())).unwrap().len()),
                (h.payload_len, *len)
            );
            files_checked += 1;
        }
    }
    eprintln!(
        "kill -9: {ROUNDS} rounds, {in_flight} left a temp file (killed mid-write), {files_checked} file loads checked"
    );
    let verify = succeeds(dir.path(), &["cache", "verify"]);
    assert!(verify.contains(" 0 bad"), "{verify}");
}

/// Regression: with API keys on, `semantic agents ls/show` looked in `default` and found nothing,
/// since the server keeps each key's agents in a namespace derived from the key.
#[test]
fn agents_commands_find_a_keys_agents_with_api_key() {
    let dir = TempDir::new("offline-keys");
    let cache = dir.path();
    let store = DiskStore::open(cache).unwrap();
    let fp = [0xcd; 32];
    let ns = semantic_api::namespace_for_key("team-key-1");
    store.write(&header(ns.as_str(), "alpha", vec![1, 2, 3], fp), &payload(10)).unwrap();
    store.write(&header("default", "old", vec![4], fp), &payload(10)).unwrap();

    let mine = succeeds(cache, &["agents", "ls", "--api-key", "team-key-1"]);
    assert!(ls_row(&mine, "alpha").is_some() && ls_row(&mine, "old").is_none(), "{mine}");
    assert_eq!(ls_row(&succeeds(cache, &["agents", "ls"]), "old").unwrap()[0], "default", "no key: every namespace");
    let show = succeeds(cache, &["agents", "show", "alpha", "--api-key", "team-key-1"]);
    assert_eq!(field(&show, "agent:"), format!("{ns}/alpha"));
    assert!(fails(cache, &["agents", "show", "alpha"]).contains("no agent default/alpha"));
    let two = ["agents", "show", "alpha", "--api-key", "team-key-1", "--api-key", "team-key-2"];
    assert!(fails(cache, &two).contains("pass --namespace, or one --api-key"));
    succeeds(cache, &["agents", "pin", "alpha", "--api-key", "team-key-1"]);
}

/// Rotating a key orphans its agents unless they move: `agents move-namespace` carries them from
/// the old key's namespace to the new one's, content unchanged.
#[test]
fn agents_move_namespace_carries_agents_to_a_new_key() {
    let dir = TempDir::new("offline-move");
    let cache = dir.path();
    let store = DiskStore::open(cache).unwrap();
    let fp = [0xef; 32];
    let old = semantic_api::namespace_for_key("old-key-123");
    let new = semantic_api::namespace_for_key("new-key-456");
    store.write(&header(old.as_str(), "alpha", (0..50).collect(), fp), &payload(700)).unwrap();
    store.write(&header(old.as_str(), "beta", vec![9], fp), &payload(5)).unwrap();
    store.write(&header(new.as_str(), "beta", vec![8], fp), &payload(5)).unwrap();

    let move_args = ["agents", "move-namespace", "--from-key", "old-key-123", "--to-key", "new-key-456"];
    let clash = fails(cache, &move_args);
    assert!(clash.contains(&format!("{new}/beta")) && clash.contains("--force"), "{clash}");
    assert!(
        ls_row(&succeeds(cache, &["agents", "ls", "--api-key", "old-key-123"]), "alpha").is_some(),
        "nothing moved"
    );
    let out = succeeds(cache, &[&move_args[..], &["--force"]].concat());
    assert!(out.contains(&format!("moved 2 agent(s) from {old} to {new}")), "{out}");
    let listed = succeeds(cache, &["agents", "ls", "--api-key", "new-key-456"]);
    assert_eq!(ls_row(&listed, "alpha").unwrap()[2], "50", "{listed}");
    assert_eq!(ls_row(&listed, "beta").unwrap()[2], "1", "--force replaced the target's beta");
    assert_eq!(succeeds(cache, &["agents", "ls", "--api-key", "old-key-123"]).lines().count(), 1, "header only");
    let (moved, moved_payload) = store
        .read(&header(new.as_str(), "alpha", vec![], fp).key(), &Compat { fingerprint: fp, state_layout: 0x101 })
        .unwrap();
    assert_eq!((moved.tokens.len(), moved_payload.len()), (50, 700));
    assert!(fails(cache, &move_args).contains("no agents in namespace"));
    assert!(
        fails(cache, &["agents", "move-namespace", "--from", "default", "--to", "default"]).contains("same namespace")
    );
    succeeds(cache, &["agents", "move-namespace", "--from", new.as_str(), "--to", "default"]);
    assert_eq!(succeeds(cache, &["agents", "ls", "--namespace", "default"]).lines().count(), 3);
}
