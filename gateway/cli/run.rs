//! `accord run`: file mode (`--agreement --key-file --key-id --input --output`).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;

use accord::engine::Engine;
use accord::event::Format;
use accord::filemode::{self, Sink};
use anyhow::Context;

use super::{load_agreement, KeyArgs, Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement to enforce.
    #[arg(long, value_name = "FILE")]
    agreement: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    /// Events to read: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    input: String,
    /// `-` for stdout (every output in input order), or a directory that receives one
    /// file per purpose topic and `quarantine.jsonl`.
    #[arg(long, value_name = "DIR|-")]
    output: String,
    /// Encoding of input and output: JSON Lines, or varint length-delimited protobuf.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    #[command(flatten)]
    observe: super::observe::ObserveArgs,
}

pub fn run(args: Args) -> Outcome {
    let agreement = load_agreement(&args.agreement)?;
    let engine = Engine::new(agreement.clone(), args.key.pseudonymiser()?);
    let mut input: Box<dyn io::BufRead> = if args.input == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.input).with_context(|| format!("cannot open the input {}", args.input))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let mut sink = if args.output == "-" {
        Sink::Stream { out: Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout().lock())), notes: Box::new(io::stderr()) }
    } else {
        Sink::dir(args.output.as_ref(), &engine, args.format).with_context(|| format!("cannot write to the output directory {}", args.output))?
    };
    let mut observing = args.observe.start(&agreement, "file", if args.input == "-" { "stdin" } else { "file" })?;
    let mut audit_error = None;
    let mut observe = |t: &accord::tally::Tally, elapsed| {
        if let Err(e) = observing.observer.batch(t, elapsed) {
            audit_error.get_or_insert(e);
        }
    };
    let tally = filemode::run(&engine, &mut input, args.format, &mut sink, args.format, &mut observe).map_err(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::Reported
        } else {
            Failure::Input(anyhow::Error::new(e).context("the run stopped"))
        }
    })?;
    if let Some(e) = audit_error {
        return Err(e.into());
    }
    observing.finish(&tally)?;
    eprint!("{}", tally.summary(&agreement));
    Ok(())
}
