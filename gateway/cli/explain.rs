//! `accord explain --agreement A EVENT_FILE [--line N]`: SPEC 2.1 step by step for one
//! event: the file's only event, or the one on line N of a JSON Lines file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use accord::engine::Engine;
use accord::pseudonym::{Key, Pseudonymiser};
use anyhow::{anyhow, Context};

use super::{load_agreement, Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement to apply.
    #[arg(long, value_name = "FILE")]
    agreement: PathBuf,
    /// A file holding one event (JSON), or a JSON Lines file of events with --line.
    #[arg(value_name = "EVENT_FILE")]
    event: PathBuf,
    /// Explain the event on this line of EVENT_FILE (1 is the first line; the line
    /// numbers are those of the quarantine and of `sed -n Np`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    line: Option<u64>,
    /// Compute pseudonyms with this key (else with a placeholder key, `explain`).
    #[arg(long, value_name = "FILE", requires = "key_id")]
    key_file: Option<PathBuf>,
    /// The key's public id, written before every pseudonym (e.g. `k2026`); goes with
    /// --key-file.
    #[arg(long, value_name = "ID", requires = "key_file")]
    key_id: Option<String>,
    /// Apply the suppressions of this file (step 6a); needs the gateway's key.
    #[arg(long, value_name = "FILE", requires = "key_file")]
    suppressions: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let agreement = load_agreement(&args.agreement)?;
    let key = match (&args.key_file, &args.key_id) {
        (Some(file), Some(id)) => super::read_key(file, id)?,
        _ => Key::new(b"accord-explain-placeholder-key-not-a-secret", "explain").expect("a valid placeholder key"),
    };
    let engine = Engine::new(agreement, Arc::new(Pseudonymiser::new(key)));
    let input = std::fs::read(&args.event).with_context(|| format!("cannot read the event file {}", args.event.display()))?;
    if args.line.is_none() {
        // An agreement, a key or a configuration given as the event: say so, rather than "malformed".
        let path = args.event.display().to_string();
        accord::filekind::expect(&path, &input, accord::filekind::FileKind::Events).map_err(|e| Failure::Input(e.into()))?;
    }
    let event = pick(&input, &args.event, args.line)?;
    let mut text = String::new();
    if let Some(n) = args.line {
        text.push_str(&format!("Line {n} of {}.\n", args.event.display()));
    }
    let suppressions = match (&args.suppressions, &args.key_id) {
        (Some(path), Some(key_id)) => {
            let loaded = accord::run::suppressions::read_file(path, key_id).with_context(|| format!("cannot read the suppressions {}", path.display()))?;
            for why in &loaded.refused {
                eprintln!("accord: {why}");
            }
            accord::engine::Suppressions::new(key_id, loaded.entries)
        }
        _ => accord::engine::Suppressions::default(),
    };
    text.push_str(&accord::dpo::explain::explain_with(&engine, event, &suppressions));
    if args.key_file.is_none() {
        text.push_str("(Pseudonyms above use a placeholder key `explain`; give --key-file and --key-id for the gateway's.)\n");
    }
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(e).context("cannot write the explanation").into()),
        _ => Ok(()),
    }
}

/// The one event to explain: line `n` of the file, or the whole file when it holds one
/// event. A file of several events without `--line` is refused, saying how to pick one.
fn pick<'a>(input: &'a [u8], path: &std::path::Path, line: Option<u64>) -> Result<&'a [u8], Failure> {
    let lines = || input.split(|b| *b == b'\n');
    match line {
        Some(n) => {
            let count = lines().count() - usize::from(input.ends_with(b"\n"));
            match lines().nth(n as usize - 1).filter(|_| n as usize <= count) {
                Some(l) if !l.trim_ascii().is_empty() => Ok(l.trim_ascii()),
                Some(_) => Err(Failure::Input(anyhow!("line {n} of {} is empty; give --line the number of a line that holds an event", path.display()))),
                None => Err(Failure::Input(anyhow!("{} has {count} line(s), so there is no line {n}; give --line a number from 1 to {count}", path.display()))),
            }
        }
        None => {
            let whole = input.trim_ascii();
            // JSON Lines: two or more lines that are JSON each. A single event, also one
            // pretty-printed over several lines (valid or not), is the whole file.
            let is_json = |l: &[u8]| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok();
            if lines().filter(|l| is_json(l)).take(2).count() < 2 || is_json(whole) {
                return Ok(whole);
            }
            let events = lines().filter(|l| !l.trim_ascii().is_empty()).count();
            let first = lines().position(|l| !l.trim_ascii().is_empty()).unwrap_or(0) + 1;
            Err(Failure::Input(anyhow!(
                "{} holds {events} lines of events, and explain takes one: pick it with --line N (e.g. --line {first}), or put that one event in a file of its own",
                path.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(i: usize) -> String {
        format!("{{\"event_id\": \"e{i}\", \"source\": \"tracker\", \"subject_id\": \"w\", \"category\": \"location\", \"occurred_at\": \"2026-03-02T10:00:00Z\"}}")
    }

    proptest! {
        /// `--line N` is line N as `sed -n Np` counts it; without it, a file of two or
        /// more JSON lines is refused with a sentence naming --line.
        #[test]
        fn line_n_is_the_nth_line(count in 1usize..40, pick_at in 0usize..40, trailing_newline: bool, blank in proptest::option::of(0usize..40)) {
            let mut lines: Vec<String> = (0..count).map(event).collect();
            if let Some(b) = blank.filter(|b| *b < count) {
                lines[b] = String::new();
            }
            let mut file = lines.join("\n");
            if trailing_newline {
                file.push('\n');
            }
            let n = pick_at % count + 1;
            let path = std::path::Path::new("events.jsonl");
            match pick(file.as_bytes(), path, Some(n as u64)) {
                Ok(got) => prop_assert_eq!(got, lines[n - 1].as_bytes()),
                Err(_) => prop_assert!(lines[n - 1].is_empty()),
            }
            prop_assert!(pick(file.as_bytes(), path, Some(count as u64 + 1)).is_err());
            let events = lines.iter().filter(|l| !l.is_empty()).count();
            match pick(file.as_bytes(), path, None) {
                Ok(got) => prop_assert!(events < 2 && got == file.trim_ascii().as_bytes()),
                Err(Failure::Input(e)) => {
                    prop_assert!(events >= 2);
                    prop_assert!(e.to_string().contains(&format!("holds {events} lines of events, and explain takes one: pick it with --line N")), "{}", e);
                }
                Err(_) => prop_assert!(false, "not bad input"),
            }
        }
    }

    #[test]
    fn one_pretty_printed_event_is_the_whole_file() {
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&event(1)).unwrap()).unwrap();
        let got = pick(pretty.as_bytes(), std::path::Path::new("e.json"), None).ok().unwrap();
        assert_eq!(got, pretty.as_bytes());
    }
}
