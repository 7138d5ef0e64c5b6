//! Tamper evidence: each audit line carries `prev_hash` (the previous
//! line's `hash`) and `hash` = SHA-256 over `prev_hash` followed by the
//! line as written without its `hash` field. Editing, deleting or
//! reordering a line breaks the chain at that line; [`verify`] finds it.
//!
//! The line's text is what is hashed (not a re-serialisation), so the
//! writer and the verifier need no shared canonical JSON form: the writer
//! appends `,"hash":"<hex>"}` to the line it hashed, minus its closing `}`.
//!
//! Lines the gateway could not write (a full disk) never enter the chain;
//! the first write after them starts with a chained `audit_gap` record
//! counting them (`audit/writer.rs`). [`verify`] reports those gaps apart
//! from breaks: the chain is intact, and the log says what it is missing.

use std::io::BufRead;

use sha2::{Digest, Sha256};

/// The `prev_hash` of the very first line the gateway writes.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of `line` (the JSON object without `hash`) chained to `prev`.
pub(crate) fn hash(prev: &str, line: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(prev.as_bytes());
    digest.update(line.as_bytes());
    hex::encode(digest.finalize())
}

/// Appends the `hash` field to a serialised JSON object.
pub(crate) fn seal(line: &str, hash: &str) -> String {
    let open = line.strip_suffix('}').expect("a JSON object ends with }");
    format!("{open},\"hash\":\"{hash}\"}}")
}

/// Where and why a chain is broken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {why}")]
pub struct Broken {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Lines the gateway could not write, as its gap record states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The gap record's 1-based line number.
    pub line: usize,
    /// How many lines were lost before it.
    pub lost_lines: u64,
    /// When the first and the last of them failed (RFC 3339).
    pub lost_since: String,
    pub lost_until: String,
}

/// An intact chain: how many lines were checked, and the gaps it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub lines: usize,
    pub gaps: Vec<Gap>,
}

/// Checks every line of an audit log: the lines checked and the gap
/// records found, or the first break. The first line's `prev_hash` is
/// taken as given (a rotated file starts mid-chain); every later one must
/// equal its predecessor's `hash`, or be [`GENESIS`]: a gateway restart
/// starts a new chain in the same stream (`docker logs` spans restarts).
pub fn verify(reader: impl BufRead) -> Result<Verified, Broken> {
    let mut prev: Option<String> = None;
    let mut count = 0;
    let mut gaps = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let broken = |why| Broken { line: number, why };
        let line = line.map_err(|_| broken("unreadable (not UTF-8?)"))?;
        let (body, hash_hex) =
            split_hash(&line).ok_or_else(|| broken("no trailing `hash` field"))?;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|_| broken("not a JSON object"))?;
        let prev_hash = value
            .get("prev_hash")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| broken("no `prev_hash` field"))?;
        let is_restart = prev_hash == GENESIS;
        if !is_restart
            && prev
                .as_deref()
                .is_some_and(|expected| expected != prev_hash)
        {
            return Err(broken(
                "`prev_hash` does not match the previous line (deleted or reordered lines)",
            ));
        }
        if hash(prev_hash, &body) != hash_hex {
            return Err(broken("`hash` does not match the line (edited)"));
        }
        if value.get("event").and_then(serde_json::Value::as_str) == Some(super::writer::GAP_EVENT)
        {
            gaps.push(
                gap(number, &value).ok_or_else(|| broken("a gap record without its counts"))?,
            );
        }
        prev = Some(hash_hex.to_string());
        count = number;
    }
    Ok(Verified { lines: count, gaps })
}

/// The gap stated by a gap record on line `line`.
fn gap(line: usize, value: &serde_json::Value) -> Option<Gap> {
    let text = |key: &str| value.get(key)?.as_str().map(str::to_string);
    Some(Gap {
        line,
        lost_lines: value.get("lost_lines")?.as_u64()?,
        lost_since: text("lost_since")?,
        lost_until: text("lost_until")?,
    })
}

/// Splits `{…,"hash":"<hex>"}` into `{…}` and the hex.
fn split_hash(line: &str) -> Option<(String, &str)> {
    const MARKER: &str = ",\"hash\":\"";
    let rest = line.strip_suffix("\"}")?;
    let at = rest.rfind(MARKER)?;
    let hex = &rest[at + MARKER.len()..];
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((format!("{}}}", &rest[..at]), hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(lines: &[&str]) -> Vec<String> {
        let mut prev = GENESIS.to_string();
        lines
            .iter()
            .map(|fields| {
                let line = format!("{{\"n\":{fields},\"prev_hash\":\"{prev}\"}}");
                let h = hash(&prev, &line);
                prev = h.clone();
                seal(&line, &h)
            })
            .collect()
    }

    fn check(lines: &[String]) -> Result<usize, Broken> {
        verify(lines.join("\n").as_bytes()).map(|verified| verified.lines)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(check(&chain(&["1", "2", "3"])), Ok(3));
    }

    #[test]
    fn an_edited_line_is_found() {
        let mut lines = chain(&["1", "2", "3"]);
        lines[1] = lines[1].replace("\"n\":2", "\"n\":7");
        assert_eq!(check(&lines).unwrap_err().line, 2);
    }

    #[test]
    fn a_deleted_line_is_found() {
        let mut lines = chain(&["1", "2", "3"]);
        lines.remove(1);
        assert_eq!(check(&lines).unwrap_err().line, 2);
    }

    #[test]
    fn reordered_lines_are_found() {
        let mut lines = chain(&["1", "2", "3"]);
        lines.swap(1, 2);
        assert_eq!(check(&lines).unwrap_err().line, 2);
    }

    #[test]
    fn a_restarted_chain_continues_the_stream() {
        let mut lines = chain(&["1", "2"]);
        lines.extend(chain(&["3"]));
        assert_eq!(check(&lines), Ok(3));
    }

    #[test]
    fn a_gap_record_is_reported_and_the_chain_stays_intact() {
        let gap = r#"1,"event":"audit_gap","lost_lines":37,"lost_since":"a","lost_until":"b""#;
        let lines = chain(&["1", gap, "2"]);
        let verified = verify(lines.join("\n").as_bytes()).unwrap();
        assert_eq!(verified.lines, 3);
        assert_eq!(
            verified.gaps,
            [Gap {
                line: 2,
                lost_lines: 37,
                lost_since: "a".into(),
                lost_until: "b".into()
            }]
        );
        // The count is chained: editing it breaks the chain.
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("37", "3");
        assert_eq!(check(&edited).unwrap_err().line, 2);
    }

    #[test]
    fn a_stripped_hash_is_found() {
        let lines = vec!["{\"n\":1}".to_string()];
        assert_eq!(check(&lines).unwrap_err().line, 1);
    }
}
