//! The gateway's own log: what it is doing, never what it is carrying.
//!
//! `tracing` events, written to stderr as JSON lines (one object per line, for a log
//! collector; the default when stderr is not a terminal, as in a container) or as
//! plain text (the default on a terminal). `ACCORD_LOG_FORMAT=json|text` chooses;
//! `ACCORD_LOG` sets the level (`info` by default; any `tracing` filter such as
//! `accord=debug`). No event, identifier, attribute value or secret is ever logged:
//! messages name fields, rules, purposes, files and counts.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// `ACCORD_LOG_FORMAT`, else JSON unless stderr is a terminal.
    pub fn from_env() -> LogFormat {
        LogFormat::choose(None)
    }

    /// `ACCORD_LOG_FORMAT`, else `configured`, else JSON unless stderr is a terminal.
    pub fn choose(configured: Option<LogFormat>) -> LogFormat {
        match std::env::var("ACCORD_LOG_FORMAT").ok().as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            _ => match configured {
                Some(f) => f,
                None if std::io::stderr().is_terminal() => LogFormat::Text,
                None => LogFormat::Json,
            },
        }
    }
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format of the installed log, if one is installed.
pub fn installed() -> Option<LogFormat> {
    FORMAT.get().copied()
}

/// Installs the log for this process (once; later calls do nothing).
pub fn init(format: LogFormat, level: Option<&str>) {
    if FORMAT.set(format).is_err() {
        return;
    }
    let filter = std::env::var("ACCORD_LOG")
        .ok()
        .or_else(|| level.map(str::to_owned))
        .and_then(|l| EnvFilter::try_new(l).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_target(false).without_time().with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
