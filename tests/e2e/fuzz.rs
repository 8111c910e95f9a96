//! `guestward fuzz`: it finds what a component does wrong on some inputs,
//! writes reproducers that `run --replay` reproduces, exits 0 on a
//! well-behaved command, and repeats a run for a seed.

use std::path::Path;
use std::process::Output;

use guestward_tests::artifacts;
use guestward_tests::artifacts::guestward;

/// The probe's grants (it imports every interface), with short limits so
/// that a spinning input costs little.
const PROBE_POLICY: &str = r#"
[component.probe]
files = [{ path = "/etc/app", access = "read-write" }]
xenstore = ["vm-data"]
programs = [["/bin/echo", "*"]]
download = ["https://updates.example.com/agent/"]
limits = { deadline-ms = 300, memory-mib = 16, reply-bytes = 1024 }
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `guestward fuzz probe.wasm NAME` with the short limits; findings go to
/// `dir/findings`.
fn fuzz_probe(dir: &Path, name: &str, extra: &[&str]) -> Output {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, PROBE_POLICY).unwrap();
    let probe = artifacts::component("probe");
    let findings = dir.join("findings");
    let mut args = vec![
        "fuzz",
        probe.to_str().unwrap(),
        name,
        "--policy",
        policy.to_str().unwrap(),
        "--findings",
        findings.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    guestward(&args)
}

fn reproducers(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("findings"))
        .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn an_oversized_reply_on_some_inputs_is_found_and_replayed() {
    // big-reply answers N bytes for the value N: small values are fine, and
    // the fuzzer must reach one over the 1024-byte limit by mutation.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::write(corpus.join("small.json"), r#"{"value": "10"}"#).unwrap();
    let output = fuzz_probe(
        dir.path(),
        "big-reply",
        &["--runs", "300", "--seed", "3", "--corpus", corpus.to_str().unwrap()],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains("executions: 300 "), "{stdout}");
    assert!(stdout.contains("reply-too-large in big-reply"), "{stdout}");
    let found = reproducers(dir.path());
    let oversized = found
        .iter()
        .find(|path| path.to_string_lossy().contains("reply-too-large"))
        .unwrap_or_else(|| panic!("no reproducer in {found:?}"));

    let replay = guestward(&["run", "--replay", oversized.to_str().unwrap()]);
    let replayed = text(&replay.stdout);
    assert_eq!(replay.status.code(), Some(1), "{replayed}");
    assert!(replayed.contains("over its limit of 1024 bytes"), "{replayed}");
    assert!(replayed.contains("finding: reply-too-large"), "{replayed}");
}

#[test]
fn panics_deadlines_memory_stack_exits_and_bad_codes_are_each_found() {
    let cases = [
        ("panic", "panic", "probe panicked on request"),
        ("spin", "deadline", "did not finish within its deadline of 300 ms"),
        ("grow", "memory", "exceeded its memory limit of 16 MiB"),
        ("exit", "exited", "exited with status"),
        ("recurse", "stack", "overflowed its stack"),
        ("bad-code", "invalid-code", "invalid return code"),
    ];
    for (name, kind, words) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = fuzz_probe(dir.path(), name, &["--runs", "2"]);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{name}: {stdout}");
        assert!(stdout.contains(&format!("{kind} in {name}: ")), "{name}: {stdout}");
        assert!(stdout.contains(words), "{name}: {stdout}");
        let reproducer = &reproducers(dir.path())[0];
        let replay = guestward(&["run", "--replay", reproducer.to_str().unwrap()]);
        let replayed = text(&replay.stdout);
        assert!(replayed.contains(&format!("finding: {kind}")), "{name}: {replayed}");
    }
}

#[test]
fn a_well_behaved_command_exits_0_with_a_summary() {
    let version = artifacts::component("version");
    let dir = tempfile::tempdir().unwrap();
    let findings = dir.path().join("findings");
    let output = guestward(&[
        "fuzz",
        version.to_str().unwrap(),
        "--runs",
        "200",
        "--findings",
        findings.to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains("executions: 200 "), "{stdout}");
    assert!(stdout.contains("findings: 0"), "{stdout}");
    assert!(!findings.exists(), "nothing is written when nothing is found");
}

#[test]
fn the_same_seed_repeats_a_run() {
    // big-reply's findings (sizes over 1024 bytes, allocations that fail)
    // do not depend on timing: the counts, the corpus and the reproducers
    // repeat.
    let run = |seed: &str| {
        let dir = tempfile::tempdir().unwrap();
        let output = fuzz_probe(dir.path(), "big-reply", &["--runs", "150", "--seed", seed]);
        let stdout = text(&output.stdout).replace(dir.path().to_str().unwrap(), "DIR");
        let summary: Vec<&str> = stdout.lines().skip(1).collect(); // not the timing line
        let reproducers: Vec<String> = reproducers(dir.path())
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap())
            .collect();
        (summary.join("\n"), reproducers)
    };
    let first = run("11");
    assert!(first.0.contains("corpus: "), "{}", first.0);
    assert_eq!(first, run("11"));
    assert_ne!(first, run("12"), "another seed tries other inputs");
}
