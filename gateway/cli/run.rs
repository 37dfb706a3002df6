//! `accord run`: file mode (`--agreement --key-file --key-id --input --output`), or
//! Kafka mode (`--config GATEWAY.yaml`), which runs until SIGTERM or SIGINT.
//!
//! In Kafka mode a signal asks the pipeline to stop taking records, drain what is in
//! flight and commit; the process exits 0 once it has, and in any case within the
//! drain timeout plus ten seconds. A second signal stops it at once (exit 1); nothing
//! is lost either way, the records not committed are consumed again after a restart.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use accord::config::Config;
use accord::engine::Engine;
use accord::event::Format;
use accord::run::reload::{Gate, Live};
use accord::dpo::signing::{self, Party};
use accord::run::filemode::{self, Sink};
use accord::run::kafka::{Pipeline, Shutdown};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use anyhow::Context;

use super::{load_agreement, Failure, KeyArgs, Outcome};

#[derive(clap::Args)]
#[command(after_help = "File mode: --agreement, --key-file, --key-id, --input and --output (no broker needed).\nKafka mode: --config GATEWAY.yaml alone (examples/gateway.yaml is a commented one); --admin and --audit go with either.")]
pub struct Args {
    /// Kafka mode: the gateway configuration (brokers, topics, delivery, the agreement
    /// and key files). Runs until SIGTERM or SIGINT.
    #[arg(long, value_name = "GATEWAY.yaml", conflicts_with_all = ["agreement", "key_file", "key_id", "input", "output", "format"])]
    config: Option<PathBuf>,
    /// The agreement to enforce.
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    agreement: Option<PathBuf>,
    /// File whose bytes, exactly, are the pseudonym key (at least 32 bytes; a final
    /// newline is part of it, and warned about).
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    key_file: Option<PathBuf>,
    /// The key's public id, written before every pseudonym (e.g. `k2026`).
    #[arg(long, value_name = "ID", required_unless_present = "config")]
    key_id: Option<String>,
    /// Events to read: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-", required_unless_present = "config")]
    input: Option<String>,
    /// `-` for stdout (every output in input order), or a directory that receives one
    /// file per purpose topic and `quarantine.jsonl`.
    #[arg(long, value_name = "DIR|-", required_unless_present = "config")]
    output: Option<String>,
    /// Encoding of input and output: JSON Lines, or varint length-delimited protobuf.
    /// Suppressions in force (SPEC 2.7): JSON Lines, one entry per line, written by
    /// `accord suppress`. An invalid line is refused at its line; the rest stay in force.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    suppressions: Option<PathBuf>,
    #[arg(long, default_value = "json", value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(Format::NAMES), |s| s.parse::<Format>().expect("a listed format")))]
    format: Format,
    #[command(flatten)]
    observe: super::observe::ObserveArgs,
}

pub fn run(args: Args) -> Outcome {
    match args.config {
        Some(config) => run_kafka(&config, args.observe),
        None => {
            accord::report::log::init(accord::report::log::LogFormat::from_env(), None);
            run_file(args)
        }
    }
}

fn run_file(args: Args) -> Outcome {
    let (Some(agreement), Some(key_file), Some(key_id), Some(input), Some(output)) = (args.agreement, args.key_file, args.key_id, args.input, args.output)
    else {
        unreachable!("clap requires the file-mode flags without --config");
    };
    let agreement_path = agreement;
    let agreement = load_agreement(&agreement_path)?;
    let engine = Engine::new(agreement.clone(), KeyArgs { key_file, key_id: key_id.clone() }.pseudonymiser()?);
    let suppressions = accord::run::suppressions::none();
    if let Some(path) = &args.suppressions {
        let loaded = accord::run::suppressions::read_file(path, &key_id).with_context(|| format!("cannot read the suppressions {}", path.display()))?;
        for why in &loaded.refused {
            eprintln!("accord: {why}");
        }
        tracing::info!(in_force = loaded.entries.len(), refused = loaded.refused.len(), "suppressions read");
        accord::run::suppressions::swap(&suppressions, accord::engine::Suppressions::new(&key_id, loaded.entries));
    }
    let mut input_stream = filemode::Input::open(&input).with_context(|| format!("cannot open the input {input}"))?;
    let mut sink = if output == "-" {
        Sink::Stream { out: Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout().lock())), notes: Box::new(io::stderr()) }
    } else {
        Sink::dir(output.as_ref(), &engine, args.format).with_context(|| format!("cannot write to the output directory {output} (give --output a directory, created if missing, or `-` for stdout)"))?
    };
    let mut observing = args.observe.start(&agreement, "file", if input == "-" { "stdin" } else { "file" })?;
    accord::run::suppressions::gauge(suppressions.load().len());
    // The agreement file is watched: a valid change comes into force between two events.
    let live = Live::new(&agreement_path, Arc::new(engine), None, observing.trail.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = live.watch(Duration::from_secs(1), stop.clone()).with_context(|| format!("cannot watch the agreement {} for changes", agreement_path.display()))?;
    let mut audit_error = None;
    let mut observe = |engine: &Engine, t: &accord::report::tally::Tally, elapsed| {
        if let Err(e) = observing.batch(engine, t, elapsed) {
            audit_error.get_or_insert(e);
        }
    };
    let result = filemode::run_with(live.clone(), suppressions, &mut input_stream, args.format, &mut sink, args.format, &mut observe);
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let tally = result.map_err(|e| {
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
    print_summary(&tally);
    Ok(())
}

fn run_kafka(path: &std::path::Path, observe: super::observe::ObserveArgs) -> Outcome {
    let config = Config::load(path)?;
    accord::report::log::init(accord::report::log::LogFormat::choose(config.log_format), config.log_level.as_deref());
    // Every party whose signature the agreement must carry, at start and at each reload.
    let parties = config
        .required_signatures
        .iter()
        .map(|(name, file)| Party::from_file(file, Some(name)))
        .collect::<Result<Vec<_>, _>>()?;
    if !parties.is_empty() {
        let bytes = std::fs::read(&config.agreement).with_context(|| format!("cannot read the agreement {}", config.agreement.display()))?;
        signing::verify_parties(&config.agreement, &bytes, &parties)?;
    }
    let agreement = load_agreement(&config.agreement)?;
    let key = KeyArgs { key_file: config.key_file.clone(), key_id: config.key_id.clone() };
    let engine = Arc::new(Engine::new(agreement.clone(), key.pseudonymiser()?));
    // The config's audit trail (a flag wins), copied to its audit topic if it names one.
    let (observe, audit_topic) = observe.with_config(&config, &agreement)?;
    // The trail names the configuration it ran with by its digest, never its content.
    let config_sha256 = std::fs::read(path).ok().map(|bytes| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    let observe = super::observe::ObserveArgs { admin: observe.admin.or(config.admin), config_sha256, ..observe };
    let observing = observe.start_with(&agreement, "kafka", "kafka", true)?;
    let health = observing.health.clone();
    // The agreement file is watched: a valid, signed change that does not loop comes
    // into force between two records; anything else is refused and the one in force stays.
    let gate: Gate = {
        let (kafka, audit_topic) = (config.kafka.clone(), config.audit.topic.clone());
        Box::new(move |path: &std::path::Path, bytes: &[u8], a: &accord::agreement::Agreement| {
            if !parties.is_empty() {
                signing::verify_parties(path, bytes, &parties).map_err(|e| e.to_string())?;
            }
            if let Some(p) = a.purposes.iter().find(|p| Some(&p.topic) == audit_topic.as_ref()) {
                return Err(format!("purpose `{}` would write to the audit topic `{}`", p.name, p.topic));
            }
            accord::run::kafka::check_agreement(&kafka, a).map_err(|e| e.to_string())
        })
    };
    let live = Live::new(&config.agreement, engine, Some(gate), observing.trail.clone());
    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = live.watch(Duration::from_secs(1), stop_watching.clone()).with_context(|| format!("cannot watch the agreement {} for changes", config.agreement.display()))?;
    let observing = Arc::new(Mutex::new(observing));
    let audit_error = Arc::new(Mutex::new(None));
    let on_batch = {
        let (observing, audit_error) = (observing.clone(), audit_error.clone());
        Box::new(move |engine: &Engine, t: &accord::report::tally::Tally, elapsed: Duration| {
            if let Err(e) = observing.lock().unwrap_or_else(|e| e.into_inner()).batch(engine, t, elapsed) {
                audit_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        })
    };
    let engines: Arc<dyn accord::run::reload::Engines + Send + Sync> = live.clone();

    // Every replica reads the suppressions topic to its end before it takes its first
    // input record, then follows it (SPEC 2.7).
    let (suppressions, _follower) = match &config.suppressions_topic {
        Some(topic) => {
            let live = accord::run::suppressions::none();
            let follower = accord::run::kafka::suppressions::Follower::start(&config.kafka, topic, &config.key_id, live.clone(), Duration::from_secs(120))?;
            (Some(live), Some(follower))
        }
        None => (None, None),
    };
    let kafka = config.kafka.clone();
    let grace = kafka.limits.drain_timeout + Duration::from_secs(10);
    let shutdown = Shutdown::new();
    // SIGTERM or SIGINT: stop taking records, drain, commit and exit, within the grace
    // period; a second signal stops at once. (signal-hook, as for the reload's SIGHUP.)
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot handle SIGTERM and SIGINT")?;
    let signals_handle = signals.handle();
    let listener = {
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            for (n, signal) in signals.forever().enumerate() {
                if n > 0 {
                    stop_now("a second signal");
                }
                let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
                tracing::info!("{name}: stopping (drain, commit, exit; at most {grace:?})");
                stop.request();
                std::thread::spawn(move || {
                    std::thread::sleep(grace);
                    tracing::warn!("did not stop within {grace:?}; exiting anyway (records not committed are consumed again after a restart)");
                    std::process::exit(0)
                });
            }
        })
    };
    let summary = Pipeline { kafka: &kafka, engines, shutdown, on_batch: Some(on_batch), health: Some(health), suppressions }.run();
    signals_handle.close();
    let _ = listener.join();
    stop_watching.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let summary = summary?;
    if let Some(e) = audit_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e.into());
    }
    let observing = Arc::try_unwrap(observing).ok().expect("the pipeline has stopped").into_inner().unwrap_or_else(|e| e.into_inner());
    observing.finish(&summary.totals)?;
    print_summary(&summary.totals);
    if let Some(topic) = audit_topic {
        topic.flush(Duration::from_secs(10));
    }
    Ok(())
}

/// The end-of-run summary, for people: the per-purpose table in plain text wherever
/// stderr goes. A JSON log also gets the counts as one structured event, for collectors.
fn print_summary(totals: &accord::report::tally::Totals) {
    if accord::report::log::installed() == Some(accord::report::log::LogFormat::Json) {
        tracing::info!(received = totals.received(), forwarded_events = totals.forwarded_events(), dropped = totals.dropped_total(), "run finished");
    }
    eprint!("{}", totals.summary());
}

fn stop_now(why: &str) -> ! {
    tracing::warn!("{why}: stopping at once (records not committed are consumed again after a restart)");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: super::Args,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
    }

    #[test]
    fn config_alone_is_kafka_mode() {
        let cli = parse(&["--config", "gw.yaml"]).unwrap();
        assert_eq!(cli.run.config.as_deref(), Some(std::path::Path::new("gw.yaml")));
    }

    #[test]
    fn config_conflicts_with_file_mode_flags() {
        let e = parse(&["--config", "gw.yaml", "--input", "-"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&["--config", "gw.yaml", "--format", "proto"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn file_mode_flags_are_required_without_config() {
        let e = parse(&["--agreement", "a.yaml", "--input", "-"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let args = ["--agreement", "a.yaml", "--key-file", "k", "--key-id", "k1", "--input", "-", "--output", "-"];
        assert!(parse(&args).is_ok());
    }
}
