//! The README's commands, run exactly as written (issue 15), so that the README cannot
//! drift from the CLI.
//!
//! Every command of every ```sh block of README.md runs, in README order, in one shell,
//! in a scratch folder that holds a copy of `examples/`; each must exit 0. A command
//! marked `(needs a broker)` is left out (and counted). Two stand-ins make "as written"
//! possible inside `cargo test`: `target/release/accord` in the scratch folder is the
//! binary under test, and `cargo` is a small script for which `cargo build` does
//! nothing (that binary is built already) and `cargo run -- ARGS` runs `accord ARGS`.
//! The ```text synopsis is checked too (every flag it names is in its command's help),
//! and every ```yaml block must pass `accord check`.

use std::path::Path;

use crate::common::root;

/// The marker of a command this test leaves out.
const NEEDS_A_BROKER: &str = "(needs a broker)";

struct Command {
    /// README line where it starts.
    line: usize,
    text: String,
    needs_broker: bool,
}

/// The commands of the README's fenced blocks in `language`, continuation lines joined.
fn blocks(readme: &str, language: &str) -> Vec<Command> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut pending: Option<Command> = None;
    for (i, line) in readme.lines().enumerate() {
        if let Some(info) = line.strip_prefix("```") {
            inside = !inside && info.trim() == language;
            continue;
        }
        if !inside || (pending.is_none() && (line.trim().is_empty() || line.trim_start().starts_with('#'))) {
            continue;
        }
        let command = pending.get_or_insert(Command { line: i + 1, text: String::new(), needs_broker: false });
        command.text.push_str(line);
        command.text.push('\n');
        if !line.ends_with('\\') {
            let mut done = pending.take().unwrap();
            done.needs_broker = done.text.contains(NEEDS_A_BROKER);
            out.push(done);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_readme_commands_run_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let commands = blocks(&readme, "sh");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    copy_dir(&root().join("examples"), &dir.join("examples"));
    std::fs::create_dir_all(dir.join("target/release")).unwrap();
    std::os::unix::fs::symlink(crate::common::accord_bin(), dir.join("target/release/accord")).unwrap();
    let bin = dir.join(".stand-ins");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = "#!/bin/sh\n# The README test's cargo: the binary under test is built already.\ncase \"$1\" in\n  build) exit 0 ;;\n  run) shift; [ \"$1\" = \"--\" ] && shift; exec \"$ACCORD_UNDER_TEST\" \"$@\" ;;\n  *) echo \"cargo $1 is not available in the README test\" >&2; exit 127 ;;\nesac\n";
    std::fs::write(bin.join("cargo"), cargo).unwrap();
    std::fs::set_permissions(bin.join("cargo"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // One shell, README order; after each command its status is checked.
    let mut script = String::from("check() { if [ \"$2\" != 0 ]; then echo \"README.md:$1: exit status $2\" >&2; exit 100; fi; }\n");
    let (mut run, mut left_out) = (0, Vec::new());
    for c in &commands {
        if c.needs_broker {
            left_out.push(c.line);
            continue;
        }
        script.push_str(&c.text);
        script.push_str(&format!("check {} $?\n", c.line));
        run += 1;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", format!("{}:{path}", bin.display()))
        .env("ACCORD_UNDER_TEST", crate::common::accord_bin())
        .env("ACCORD_LOG_FORMAT", "text")
        .env_remove("ACCORD_AUDIT_FILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a README command failed:\n{stderr}\n--- script ---\n{script}");
    // What ran did its work: the demo's, file mode's and the DPO's files are there.
    for made in ["accord-demo-output/accord.safety.jsonl", "out/accord.safety.jsonl", "agreement.html", "agreement-v5.yaml.ondernemingsraad-acme-utrecht.sig"] {
        assert!(dir.join(made).is_file(), "{made} was not written; stderr:\n{stderr}");
    }
    assert!(run >= 10, "only {run} README commands ran");
    // Exactly the broker commands are left out: the test runner and Kafka mode.
    assert_eq!(left_out.len(), 2, "left out (needs a broker): README lines {left_out:?}");
}

#[test]
fn the_readme_synopsis_names_only_flags_that_exist() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let synopsis = blocks(&readme, "text");
    // A usage is a line that starts with `accord`, and the indented lines of flags under it.
    let mut usages: Vec<Command> = Vec::new();
    for c in synopsis {
        match usages.last_mut() {
            Some(last) if !c.text.starts_with("accord ") && c.text.trim_start().starts_with(['[', '-']) => last.text.push_str(&c.text),
            _ if c.text.starts_with("accord ") => usages.push(c),
            _ => panic!("README.md:{}: a synopsis line that is neither a usage nor its flags: {}", c.line, c.text),
        }
    }
    assert!(usages.len() >= 8, "{} usage lines", usages.len());
    assert!(usages.iter().any(|u| u.text.contains("--audit-interval")), "the continuation lines are read");
    for usage in &usages {
        let words: Vec<&str> = usage.text.split_whitespace().collect();
        // The command is the lower-case words after `accord`, up to the first flag or placeholder.
        let command: Vec<&str> = words[1..].iter().take_while(|w| w.chars().all(|c| c.is_ascii_lowercase())).copied().collect();
        let help = crate::common::accord().args(&command).arg("--help").output().unwrap();
        assert!(help.status.success(), "README.md:{}: `accord {}` has no help", usage.line, command.join(" "));
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in words.iter().filter_map(|w| w.trim_start_matches('[').strip_prefix("--")) {
            let flag = flag.trim_end_matches(']').split(['=', ']']).next().unwrap();
            assert!(help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n")), "README.md:{}: `accord {}` has no --{flag}", usage.line, command.join(" "));
        }
    }
}

/// The README's agreement in brief is a real agreement: `accord check` accepts it.
#[test]
fn the_readme_agreement_checks() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut yaml = Vec::new();
    let mut inside = None;
    for line in readme.lines() {
        match (line.strip_prefix("```"), inside.as_mut()) {
            (Some("yaml"), None) => inside = Some(String::new()),
            (Some(_), Some(_)) => yaml.push(inside.take().unwrap()),
            (None, Some(block)) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    assert!(!yaml.is_empty(), "the README has no yaml block");
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in yaml.iter().enumerate() {
        let path = dir.path().join(format!("readme-{i}.yaml"));
        std::fs::write(&path, block).unwrap();
        let out = crate::common::accord().arg("check").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "README yaml block {i} does not check:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}
