//! The audit sink: whole lines or nothing, a gap record for what was lost,
//! and the hash chain extended only by lines that were written.
//!
//! A line, or a serving thread's batch of lines (`batch.rs`), is written
//! with as many `write` calls as the kernel needs. If one fails after part
//! of it reached a file (a short write on a full disk), the file is
//! truncated back to its last whole line, so no reader ever sees a torn
//! line; should that truncation fail too, nothing more is
//! written until it succeeds. A line that could not be written is *lost*:
//! it is counted (`audit_write_failures_total`), and the next write puts an
//! `audit_gap` record in front of its line, in the same write, saying how
//! many lines were lost and when. The chain state moves only when a write
//! succeeds, so the gap record follows the last line written and is chained
//! like any other: `verify-audit` reports a gap, not a broken chain
//! (`docs/audit-and-metrics.md`, "When the audit log cannot be written").
//!
//! On stdout nothing can be truncated: after a torn write the next write
//! starts with a newline, so later lines stay whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

use super::chain;
use super::diagnostics::Diagnostics;
use super::rfc3339_ms;

/// Where lines go.
pub(super) enum Writer {
    /// Standard output; `torn` after a write that left part of a line.
    Stdout { torn: bool },
    /// An append-only file; `truncate_to` is the length to cut it back to
    /// before anything else is written (a torn line's truncation failed).
    File {
        path: PathBuf,
        /// The permissions the file is created with.
        mode: u32,
        file: File,
        truncate_to: Option<u64>,
    },
}

/// Why the audit file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {path}: {source}")]
pub struct OpenError {
    path: PathBuf,
    source: io::Error,
}

impl Writer {
    /// Opens `path` for appending (created with `mode` if missing).
    pub(super) fn file(path: &Path, mode: u32) -> Result<Writer, OpenError> {
        Ok(Writer::File {
            file: append(path, mode)?,
            path: path.to_path_buf(),
            mode,
            truncate_to: None,
        })
    }

    /// Reopens the file at its path (logrotate moved it); a pending
    /// truncation concerned the old file and is dropped.
    pub(super) fn reopen(&mut self) -> Result<(), OpenError> {
        if let Writer::File {
            path,
            mode,
            file,
            truncate_to,
        } = self
        {
            *file = append(path, *mode)?;
            *truncate_to = None;
        }
        Ok(())
    }

    /// The destination, for diagnostics.
    pub(super) fn name(&self) -> String {
        match self {
            Writer::Stdout { .. } => "stdout".to_string(),
            Writer::File { path, .. } => path.display().to_string(),
        }
    }

    /// Writes `bytes` (whole lines) entirely, or leaves no part of them in
    /// a file.
    fn write_whole(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Stdout { torn } => {
                let mut out = io::stdout().lock();
                if *torn {
                    out.write_all(b"\n")?;
                    *torn = false;
                }
                let (written, result) = write_counted(&mut out, bytes);
                *torn = result.is_err() && written > 0;
                result.and_then(|()| out.flush())
            }
            Writer::File {
                file, truncate_to, ..
            } => {
                if let Some(length) = *truncate_to {
                    cut_back(file, length)?;
                    *truncate_to = None;
                }
                let (written, result) = write_counted(file, bytes);
                if result.is_err() && written > 0 {
                    // O_APPEND and one writer under the lock: the torn part
                    // is the file's last `written` bytes.
                    let length = file.metadata()?.len().saturating_sub(written);
                    if cut_back(file, length).is_err() {
                        *truncate_to = Some(length);
                    }
                }
                result
            }
        }
    }
}

/// `line` (a JSON object serialised without `prev_hash`) with `prev_hash`
/// as its last field: the same text serde writes when the field is set.
fn with_prev_hash(line: &str, prev_hash: &str) -> String {
    let open = line.strip_suffix('}').expect("a JSON object ends with }");
    let mut text = String::with_capacity(line.len() + prev_hash.len() + 16);
    text.push_str(open);
    text.push_str(",\"prev_hash\":\"");
    text.push_str(prev_hash);
    text.push_str("\"}");
    text
}

/// `write` until done or failed: how many bytes went out, and the result.
fn write_counted(out: &mut impl Write, bytes: &[u8]) -> (u64, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match out.write(&bytes[written..]) {
            Ok(0) => return (written as u64, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return (written as u64, Err(error)),
        }
    }
    (written as u64, Ok(()))
}

/// Truncates `file` to `length` unless it is already shorter (copied and
/// truncated by logrotate meanwhile).
fn cut_back(file: &File, length: u64) -> io::Result<()> {
    if file.metadata()?.len() > length {
        file.set_len(length)?;
    }
    Ok(())
}

fn append(path: &Path, mode: u32) -> Result<File, OpenError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
        .map_err(|source| OpenError {
            path: path.to_path_buf(),
            source,
        })
}

/// Lines lost since the last successful write.
struct Lost {
    lines: u64,
    since: OffsetDateTime,
    until: OffsetDateTime,
}

/// The record written before the first line after lost ones. Its `event`,
/// `decision` and `reason` are the names `docs/audit-and-metrics.md` gives.
#[derive(Serialize)]
struct GapRecord {
    ts: String,
    event: &'static str,
    decision: &'static str,
    reason: &'static str,
    /// How many lines could not be written.
    lost_lines: u64,
    /// When the first and the last of them failed.
    lost_since: String,
    lost_until: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_hash: Option<String>,
}

/// The `event` of a gap record; `verify-audit` looks for it.
pub(super) const GAP_EVENT: &str = "audit_gap";

/// The writer, the chain state and the loss bookkeeping, under one lock.
pub(super) struct Sink {
    pub(super) writer: Writer,
    hash_chain: bool,
    /// The last written line's hash (chain only).
    prev_hash: String,
    lost: Option<Lost>,
    /// Lines lost since the last recovery the diagnostics announced.
    unannounced: u64,
    /// Lost lines in total (`audit_write_failures_total`).
    lost_total: Arc<AtomicU64>,
    diagnostics: Diagnostics,
}

impl Sink {
    pub(super) fn new(writer: Writer, hash_chain: bool, diagnostics: Diagnostics) -> Sink {
        Sink {
            writer,
            hash_chain,
            prev_hash: chain::GENESIS.to_string(),
            lost: None,
            unannounced: 0,
            lost_total: Arc::new(AtomicU64::new(0)),
            diagnostics,
        }
    }

    /// The count of lost lines, shared with the metrics.
    pub(super) fn lost_total(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lost_total)
    }

    /// Writes `lines` (`count` serialised records, each ending in a
    /// newline, without `prev_hash`) with one `write_whole`, after the gap
    /// record if lines were lost. When chained, each line gets its
    /// `prev_hash` and `hash` here, in the order written. Returns whether
    /// they were all written. A batch of several lines that fails is
    /// written again line by line ([`Sink::write_one_by_one`]); a single
    /// line that fails is counted as lost. Nothing is ever torn.
    pub(super) fn write_lines(&mut self, lines: &str, count: u64) -> bool {
        let mut prev = self.prev_hash.clone();
        let mut text = self.gap_line(&mut prev);
        let result = if !self.hash_chain && text.is_empty() {
            self.writer.write_whole(lines.as_bytes())
        } else {
            if self.hash_chain {
                text.reserve(lines.len() + lines.len() / 2);
                for line in lines.split_terminator('\n') {
                    self.push_line(&mut text, with_prev_hash(line, &prev), &mut prev);
                }
            } else {
                text.push_str(lines);
            }
            self.writer.write_whole(text.as_bytes())
        };
        match result {
            Ok(()) => {
                self.written(prev, count);
                true
            }
            Err(_) if count > 1 => self.write_one_by_one(lines),
            Err(error) => {
                self.count_lost(count);
                let name = self.writer.name();
                self.diagnostics.failed(Instant::now(), &error, &name);
                false
            }
        }
    }

    /// A batch that could not be written whole (on a nearly full disk it
    /// may not fit where a single line still does) is written a line at a
    /// time, in order, so every line that fits is kept as if the lines had
    /// never been batched, and the log does not flip between failing and
    /// written as batches of different sizes come. From the first line
    /// that fails, the rest of the batch is lost and counted.
    fn write_one_by_one(&mut self, lines: &str) -> bool {
        let mut rest = lines.split_inclusive('\n');
        for line in rest.by_ref() {
            if !self.write_lines(line, 1) {
                let left = rest.count() as u64;
                if left > 0 {
                    self.count_lost(left);
                }
                return false;
            }
        }
        true
    }

    /// `count` lines could not be written.
    fn count_lost(&mut self, count: u64) {
        let now = OffsetDateTime::now_utc();
        let lost = self.lost.get_or_insert(Lost {
            lines: 0,
            since: now,
            until: now,
        });
        lost.lines += count;
        lost.until = now;
        self.lost_total.fetch_add(count, Ordering::Relaxed);
    }

    /// Whether the log takes lines again: with lines lost, tries to write
    /// the gap record alone. A failed try loses no line, so is not counted.
    pub(super) fn resume(&mut self) -> bool {
        let mut prev = self.prev_hash.clone();
        let text = self.gap_line(&mut prev);
        if text.is_empty() {
            return true;
        }
        if self.writer.write_whole(text.as_bytes()).is_err() {
            return false;
        }
        self.written(prev, 0);
        true
    }

    /// Lines were written up to the one hashed `prev`: a pending gap
    /// record and `lines` others. The recovery is logged once a line other
    /// than the gap record is written: on a nearly full disk the short gap
    /// record may fit where the next line does not, and the log would
    /// otherwise say "recovered" and "failed" again by turns.
    fn written(&mut self, prev: String, lines: u64) {
        self.prev_hash = prev;
        if let Some(lost) = self.lost.take() {
            self.unannounced += lost.lines;
        }
        if lines > 0 && self.unannounced > 0 {
            let name = self.writer.name();
            let lost_lines = std::mem::take(&mut self.unannounced);
            self.diagnostics
                .recovered(Instant::now(), lost_lines, &name);
        }
    }

    /// The gap record's line (with its newline), or nothing if no line
    /// was lost; `prev` moves on to its hash.
    fn gap_line(&self, prev: &mut String) -> String {
        let mut text = String::new();
        if let Some(lost) = &self.lost {
            let record = GapRecord {
                ts: rfc3339_ms(OffsetDateTime::now_utc()),
                event: GAP_EVENT,
                decision: "audit",
                reason: "audit.lines_lost",
                lost_lines: lost.lines,
                lost_since: rfc3339_ms(lost.since),
                lost_until: rfc3339_ms(lost.until),
                prev_hash: self.hash_chain.then(|| prev.clone()),
            };
            let line = serde_json::to_string(&record).expect("a GapRecord always serialises");
            self.push_line(&mut text, line, prev);
        }
        text
    }

    /// Appends `line`, sealed with its hash when chained, and a newline.
    fn push_line(&self, text: &mut String, line: String, prev: &mut String) {
        if self.hash_chain {
            let hash = chain::hash(prev, &line);
            text.push_str(&chain::seal(&line, &hash));
            *prev = hash;
        } else {
            text.push_str(&line);
        }
        text.push('\n');
    }
}
