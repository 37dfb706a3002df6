//! File mode: the enforcement step over a file or stdin, with no Kafka.
//!
//! Events are streamed, never slurped: one line (JSON Lines) or one varint
//! length-delimited message (protobuf) at a time, into a buffer that is reused. A line
//! longer than the largest event is read past in pieces and quarantined, so memory
//! stays flat whatever the input. Outputs go to stdout in input order, or to one file
//! per purpose topic; malformed events go to `quarantine.jsonl` by their line number
//! and reason, never their content. Whenever the input pauses, the outputs written so
//! far are flushed and the batch so far is reported, so `tail -f` through it works and
//! metrics are never behind what was processed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::enforce::{Encoding, Enforcer, Outcome};
use crate::engine::Engine;
use crate::event::{Format, Malformed, MAX_EVENT_BYTES};
use crate::report::tally::{Tally, Totals};
use crate::run::reload::Engines;

/// Where outputs go.
pub enum Sink {
    /// Every output on one stream, in input order; quarantine notes on `notes`.
    Stream { out: Box<dyn Write>, notes: Box<dyn Write> },
    /// `DIR/<topic>.jsonl` (or `.pb`) per purpose topic, and `DIR/quarantine.jsonl`.
    /// (`files` is a short list, looked up once per agreement, never per output.)
    Dir { dir: PathBuf, ext: &'static str, files: Vec<(String, BufWriter<File>)>, quarantine: BufWriter<File> },
}

impl Sink {
    /// Creates (or truncates) one file per purpose topic and the quarantine file.
    pub fn dir(dir: &Path, engine: &Engine, format: Format) -> io::Result<Sink> {
        std::fs::create_dir_all(dir)?;
        let ext = match format {
            Format::Json => "jsonl",
            Format::Proto => "pb",
            Format::Avro => "avro.bin",
        };
        let mut files: Vec<(String, BufWriter<File>)> = Vec::new();
        for p in &engine.agreement().purposes {
            if !files.iter().any(|(t, _)| *t == p.topic) {
                files.push((p.topic.clone(), create(dir, &p.topic, ext)?));
            }
        }
        let quarantine = BufWriter::new(File::create(dir.join("quarantine.jsonl"))?);
        Ok(Sink::Dir { dir: dir.to_path_buf(), ext, files, quarantine })
    }

    /// Where a purpose's topic goes: an index for [`Sink::writer`] (a file created
    /// when a reloaded agreement names a new topic).
    fn route(&mut self, topic: &str) -> io::Result<usize> {
        Ok(match self {
            Sink::Stream { .. } => 0,
            Sink::Dir { dir, ext, files, .. } => match files.iter().position(|(t, _)| t == topic) {
                Some(i) => i,
                None => {
                    files.push((topic.to_string(), create(dir, topic, ext)?));
                    files.len() - 1
                }
            },
        })
    }

    /// The stream of a route.
    fn writer(&mut self, route: usize) -> &mut dyn Write {
        match self {
            Sink::Stream { out, .. } => out,
            Sink::Dir { files, .. } => &mut files[route].1,
        }
    }

    fn quarantine(&mut self, record: u64, why: Malformed) -> io::Result<()> {
        let note = serde_json::json!({ "line": record, "reason": "malformed", "detail": why.to_string() });
        match self {
            Sink::Stream { notes, .. } => writeln!(notes, "accord: quarantined line {record}: {why}"),
            Sink::Dir { quarantine, .. } => writeln!(quarantine, "{note}"),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stream { out, notes } => {
                out.flush()?;
                notes.flush()
            }
            Sink::Dir { files, quarantine, .. } => {
                for (_, f) in files.iter_mut() {
                    f.flush()?;
                }
                quarantine.flush()
            }
        }
    }
}

fn create(dir: &Path, topic: &str, ext: &str) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 18, File::create(dir.join(format!("{topic}.{ext}")))?))
}

/// Events per batch handed to the observer at the most (a batch also ends when the
/// input pauses, after a second, and when a new agreement comes into force).
pub const BATCH: u64 = 1024;

/// The input: buffered, and able to tell whether its next read might wait (a pipe or
/// a terminal with nothing written yet), so that outputs and metrics are flushed
/// whenever the input pauses and never held back while it waits.
pub struct Input<'a> {
    reader: BufReader<Box<dyn io::Read + Send + 'a>>,
    fd: Option<std::os::fd::OwnedFd>,
}

impl<'a> Input<'a> {
    /// Any reader, read as if it never pauses (bytes in memory, tests, benchmarks).
    pub fn new(reader: impl io::Read + Send + 'a) -> Input<'a> {
        Input { reader: BufReader::with_capacity(1 << 16, Box::new(reader)), fd: None }
    }

    /// A file or `-` for stdin.
    pub fn open(path: &str) -> io::Result<Input<'static>> {
        use std::os::fd::AsFd;
        let file = if path == "-" { File::from(io::stdin().as_fd().try_clone_to_owned()?) } else { File::open(path)? };
        let fd = file.as_fd().try_clone_to_owned()?;
        Ok(Input { reader: BufReader::with_capacity(1 << 16, Box::new(file)), fd: Some(fd) })
    }

    /// Nothing buffered, and nothing to read without waiting.
    fn would_wait(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags};
        let Some(fd) = &self.fd else { return false };
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        matches!(poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(0))
    }
}

/// Receives each batch's engine, tally and time spent enforcing it.
pub type Observe<'a> = dyn FnMut(&Engine, &Tally, Duration) + 'a;

/// Runs the enforcement step over every event of `input`; returns what was enforced.
/// Only I/O errors stop the run: every bad event is counted and quarantined. A
/// reloaded agreement comes into force between two events, so every event is decided
/// by one version. `observe` receives each batch (metrics, audit).
pub fn run(engines: Arc<dyn Engines + Send + Sync>, input: &mut Input<'_>, in_format: Format, sink: &mut Sink, out_format: Format, observe: &mut Observe<'_>) -> io::Result<Totals> {
    run_with(engines, crate::run::suppressions::none(), input, in_format, sink, out_format, observe)
}

/// [`run`] under the suppressions (SPEC 2.7) the `suppressions` cell holds.
pub fn run_with(
    engines: Arc<dyn Engines + Send + Sync>,
    suppressions: crate::run::suppressions::Live,
    input: &mut Input<'_>,
    in_format: Format,
    sink: &mut Sink,
    out_format: Format,
    observe: &mut Observe<'_>,
) -> io::Result<Totals> {
    let mut totals = Totals::default();
    let mut enforcer = Enforcer::new(engines, in_format, Encoding { format: out_format, length_delimited: true });
    enforcer.set_suppressions(suppressions);
    let mut hand_over = |enforcer: &mut Enforcer, totals: &mut Totals| {
        for b in enforcer.take_batches() {
            observe(&b.engine, &b.tally, b.busy);
            totals.add(b.engine.agreement(), &b.tally);
        }
    };
    let mut record = Vec::with_capacity(4096);
    // Each purpose's route, for the engine they were worked out for.
    let mut routes: Vec<usize> = Vec::new();
    let mut routed: Option<Arc<Engine>> = None;
    let mut last = Instant::now();
    let mut number = 0u64;
    loop {
        if input.would_wait() {
            // The input pauses: what was enforced so far is shown now, not later.
            sink.flush()?;
            hand_over(&mut enforcer, &mut totals);
            last = Instant::now();
        }
        let read = match in_format {
            Format::Json => read_line(&mut input.reader, &mut record)?,
            Format::Proto | Format::Avro => read_delimited(&mut input.reader, &mut record)?,
        };
        if let Read::End = read {
            break;
        }
        // A line whole in the reader's buffer is enforced where it lies, not copied.
        let (record, consume) = match read {
            Read::Buffered { len, consume } => (&input.reader.buffer()[..len], consume),
            _ => (&record[..], 0),
        };
        number += 1;
        // Checked after the read, which may have waited: the agreement in force when
        // an event arrives is the one that decides it.
        let reloaded = enforcer.refresh();
        if reloaded || enforcer.pending() >= BATCH || (number % 64 == 0 && last.elapsed() >= Duration::from_secs(1)) {
            hand_over(&mut enforcer, &mut totals);
            last = Instant::now();
        }
        let outcome = match read {
            Read::TooLarge => Some(enforcer.malformed(Malformed::TooLarge)),
            _ if in_format == Format::Json && record.iter().all(u8::is_ascii_whitespace) => None, // no event
            _ => Some(enforcer.enforce(record)),
        };
        // The record is enforced: its line can go.
        input.reader.consume(consume);
        let Some(outcome) = outcome else { continue };
        match outcome {
            Outcome::Forward(n) => {
                if !routed.as_ref().is_some_and(|e| Arc::ptr_eq(e, enforcer.engine())) {
                    let engine = enforcer.engine().clone();
                    routes = engine.agreement().purposes.iter().map(|p| sink.route(&p.topic)).collect::<io::Result<_>>()?;
                    routed = Some(engine);
                }
                for i in 0..n {
                    let out = enforcer.output(i);
                    let w = sink.writer(routes[out.purpose as usize]);
                    w.write_all(out.payload)?;
                    if out_format == Format::Json {
                        w.write_all(b"\n")?;
                    }
                }
            }
            Outcome::Quarantine(why) => sink.quarantine(number, why)?,
            Outcome::Drop => {}
        }
    }
    sink.flush()?;
    hand_over(&mut enforcer, &mut totals);
    Ok(totals)
}

enum Read {
    End,
    /// In `buf`.
    Record,
    /// The first `len` bytes of the reader's buffer; `consume` with its line end.
    Buffered { len: usize, consume: usize },
    TooLarge,
}

/// Reads one line (without its `\n` or `\r\n`): left in the reader's buffer when it
/// lies there whole, else copied into `buf`. A line longer than [`MAX_EVENT_BYTES`] is
/// consumed in pieces and reported, never held.
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Read> {
    buf.clear();
    let chunk = input.fill_buf()?;
    if let Some(i) = memchr::memchr(b'\n', chunk) {
        let len = if i > 0 && chunk[i - 1] == b'\r' { i - 1 } else { i };
        return Ok(Read::Buffered { len, consume: i + 1 });
    }
    let mut too_large = false;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_large {
            if buf.len() + take > MAX_EVENT_BYTES + 2 {
                too_large = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        input.consume(take);
        if done {
            break;
        }
    }
    if !any {
        return Ok(Read::End);
    }
    if too_large {
        return Ok(Read::TooLarge);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(Read::Record)
}

/// Reads one varint length-delimited message into `buf`.
fn read_delimited(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Read> {
    buf.clear();
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8];
        if input.read(&mut byte)? == 0 {
            if i == 0 {
                return Ok(Read::End);
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the input ends inside a message length"));
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    if len as usize > MAX_EVENT_BYTES {
        // Skip it without holding it.
        io::copy(&mut io::Read::take(&mut *input, len), &mut io::sink())?;
        return Ok(Read::TooLarge);
    }
    buf.resize(len as usize, 0);
    input.read_exact(buf).map_err(|e| io::Error::new(e.kind(), "the input ends inside a message"))?;
    Ok(Read::Record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_without_being_held() {
        let mut data = vec![b'x'; MAX_EVENT_BYTES * 3];
        data.extend_from_slice(b"\n{}\r\n");
        let mut input = io::BufReader::with_capacity(8192, &data[..]);
        let mut buf = Vec::new();
        assert!(matches!(read_line(&mut input, &mut buf).unwrap(), Read::TooLarge));
        assert!(buf.capacity() <= MAX_EVENT_BYTES * 2);
        // The next line lies whole in the buffer: left there, `\r\n` and all consumed.
        match read_line(&mut input, &mut buf).unwrap() {
            Read::Buffered { len, consume } => {
                assert_eq!(&input.buffer()[..len], b"{}");
                assert_eq!(consume, 4);
                input.consume(consume);
            }
            _ => panic!("a short line is read where it lies"),
        }
        assert!(matches!(read_line(&mut input, &mut buf).unwrap(), Read::End));
    }
}
