//! `accord demo`: file mode on the example site built into the binary, so a newcomer
//! sees the gateway work with no files, key or broker of their own.

use std::path::PathBuf;
use std::sync::Arc;

use accord::agreement::Agreement;
use accord::engine::Engine;
use accord::event::Format;
use accord::run::filemode::{self, Sink};
use accord::pseudonym::{Key, Pseudonymiser};
use anyhow::Context;

use super::Outcome;

const AGREEMENT: &[u8] = include_bytes!("../../examples/agreement.yaml");
const EVENTS: &[u8] = include_bytes!("../../examples/events.jsonl");
/// The examples' demo key: public, for the demo only.
const DEMO_KEY: &[u8] = include_bytes!("../../examples/demo.key");

#[derive(clap::Args)]
pub struct Args {
    /// Where to write one file per purpose topic and quarantine.jsonl.
    #[arg(long, value_name = "DIR", default_value = "accord-demo-output")]
    output: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    let agreement = Arc::new(Agreement::parse(AGREEMENT).map_err(|_| anyhow::anyhow!("the built-in example agreement does not check"))?.agreement);
    let key = Key::new(DEMO_KEY, "demo-2026")?;
    let engine = Arc::new(Engine::new(agreement.clone(), Arc::new(Pseudonymiser::new(key))));
    let mut sink = Sink::dir(&args.output, &engine, Format::Json).with_context(|| format!("cannot write to the output directory {} (give --output a directory, created if missing)", args.output.display()))?;
    let tally = filemode::run(Arc::new(engine.clone()), &mut filemode::Input::new(EVENTS), Format::Json, &mut sink, Format::Json, &mut |_, _, _| {})?;
    println!("Accord demo: the example warehouse agreement on a week of its sensor events (examples/).\n");
    print!("{}", tally.summary());
    println!("\nOutputs, one file per purpose topic, and the quarantine, in {}/:", args.output.display());
    for p in &agreement.purposes {
        let path = args.output.join(format!("{}.jsonl", p.topic));
        let first = std::fs::read_to_string(&path).ok().and_then(|t| t.lines().next().map(str::to_owned)).unwrap_or_default();
        println!("  {}\n    first: {first}", path.display());
    }
    println!("\nNext: `accord explain --agreement examples/agreement.yaml --line 50 examples/events.jsonl` walks one event through each step (the quarantine names malformed records by the same line numbers); the README has the rest.");
    Ok(())
}
