//! File mode: the engine over a file or stdin, with no Kafka.
//!
//! Events are streamed, never slurped: one line (JSON Lines) or one varint
//! length-delimited message (protobuf) at a time, into a buffer that is reused. A line
//! longer than the largest event is read past in pieces and quarantined, so memory
//! stays flat whatever the input. Outputs go to stdout in input order, or to one file
//! per purpose topic; malformed events go to `quarantine.jsonl` by their line number
//! and reason, never their content.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::{Engine, Outputs, Verdict};
use crate::reload::Engines;
use crate::event::{proto, Format, Malformed, MAX_EVENT_BYTES};
use crate::tally::{Tally, Totals};

/// Where outputs go.
pub enum Sink {
    /// Every output on one stream, in input order; quarantine notes on `notes`.
    Stream { out: Box<dyn Write>, notes: Box<dyn Write> },
    /// `DIR/<topic>.jsonl` (or `.pb`) per purpose topic, and `DIR/quarantine.jsonl`.
    Dir { dir: PathBuf, ext: &'static str, files: HashMap<String, BufWriter<File>>, quarantine: BufWriter<File> },
}

impl Sink {
    /// Creates (or truncates) one file per purpose topic and the quarantine file.
    pub fn dir(dir: &Path, engine: &Engine, format: Format) -> io::Result<Sink> {
        std::fs::create_dir_all(dir)?;
        let ext = match format {
            Format::Json => "jsonl",
            Format::Proto => "pb",
        };
        let mut files = HashMap::new();
        for p in &engine.agreement().purposes {
            files.insert(p.topic.clone(), create(dir, &p.topic, ext)?);
        }
        let quarantine = BufWriter::new(File::create(dir.join("quarantine.jsonl"))?);
        Ok(Sink::Dir { dir: dir.to_path_buf(), ext, files, quarantine })
    }

    /// The stream for a purpose's topic (a file created when a reloaded agreement
    /// names a new topic).
    fn writer(&mut self, topic: &str) -> io::Result<&mut dyn Write> {
        Ok(match self {
            Sink::Stream { out, .. } => out,
            Sink::Dir { dir, ext, files, .. } => {
                if !files.contains_key(topic) {
                    let file = create(dir, topic, ext)?;
                    files.insert(topic.to_string(), file);
                }
                files.get_mut(topic).expect("inserted above")
            }
        })
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
                for f in files.values_mut() {
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

/// Events per batch handed to the observer (a batch also ends after a second, and
/// when a new agreement comes into force).
pub const BATCH: u64 = 1024;

/// Runs the engine over every event of `input`; returns what was enforced.
/// Only I/O errors stop the run: every bad event is counted and quarantined.
/// The engine is taken from `engines` per batch, so a reloaded agreement comes into
/// force between two events and every event is decided by one version. `observe`
/// receives each batch's engine, tally and processing time (metrics, audit).
pub fn run(
    engines: &dyn Engines,
    input: &mut dyn BufRead,
    in_format: Format,
    sink: &mut Sink,
    out_format: Format,
    observe: &mut dyn FnMut(&Engine, &Tally, Duration),
) -> io::Result<Totals> {
    let mut totals = Totals::default();
    let mut generation = engines.generation();
    let mut engine = engines.current();
    let mut tally = Tally::new(engine.agreement());
    let mut started = Instant::now();
    let mut outputs = Outputs::default();
    let mut record = Vec::with_capacity(4096);
    let mut encoded = Vec::new();
    let mut number = 0u64;
    loop {
        let read = match in_format {
            Format::Json => read_line(input, &mut record)?,
            Format::Proto => read_delimited(input, &mut record)?,
        };
        let too_large = match read {
            Read::End => break,
            Read::Record => false,
            Read::TooLarge => true,
        };
        // Checked after the read, which may have waited: the agreement in force when
        // an event arrives is the one that decides it.
        let reloaded = engines.generation() != generation;
        let full = tally.received >= BATCH || (tally.received % 64 == 63 && started.elapsed() >= Duration::from_secs(1));
        if reloaded || full {
            observe(&engine, &tally, started.elapsed());
            totals.add(engine.agreement(), &tally);
            tally.reset();
            if reloaded {
                generation = engines.generation();
                engine = engines.current();
                tally = Tally::new(engine.agreement());
            }
            started = Instant::now();
        }
        number += 1;
        if in_format == Format::Json && !too_large && record.iter().all(u8::is_ascii_whitespace) {
            continue; // A blank line carries no event.
        }
        let verdict = if too_large {
            outputs.clear();
            Verdict::Dropped(crate::engine::Dropped {
                reason: crate::engine::DropReason::Malformed,
                category: None,
                malformed: Some(Malformed::TooLarge),
            })
        } else {
            engine.process(&record, in_format, &mut outputs)
        };
        tally.add(&verdict, &outputs);
        if let Verdict::Dropped(d) = verdict {
            if let Some(why) = d.malformed {
                sink.quarantine(number, why)?;
            }
            continue;
        }
        for (o, payload) in outputs.iter() {
            let bytes: &[u8] = match out_format {
                Format::Json => payload,
                Format::Proto => {
                    encoded.clear();
                    proto::from_output_json(payload, true, &mut encoded).map_err(io::Error::other)?;
                    &encoded
                }
            };
            let w = sink.writer(&engine.agreement().purposes[o.purpose as usize].topic)?;
            w.write_all(bytes)?;
            if out_format == Format::Json {
                w.write_all(b"\n")?;
            }
        }
    }
    sink.flush()?;
    observe(&engine, &tally, started.elapsed());
    totals.add(engine.agreement(), &tally);
    Ok(totals)
}

enum Read {
    End,
    Record,
    TooLarge,
}

/// Reads one line (without its `\n` or `\r\n`) into `buf`; a line longer than
/// [`MAX_EVENT_BYTES`] is consumed in pieces and reported, never held.
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Read> {
    buf.clear();
    let mut too_large = false;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
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
        assert!(matches!(read_line(&mut input, &mut buf).unwrap(), Read::Record));
        assert_eq!(buf, b"{}");
        assert!(matches!(read_line(&mut input, &mut buf).unwrap(), Read::End));
    }
}
