//! Finding and opening a file under the root without ever leaving it: each
//! path component is looked at with `lstat` (a symlink anywhere refuses the
//! request), the file is opened with `O_NOFOLLOW`, and the opened file must
//! be the very file that was looked at (same device and inode), so a
//! component swapped for a symlink in between is refused too. Blocking: run
//! on the blocking pool. Then the body: the file streamed in chunks.

use std::fs::{File, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use tokio::io::AsyncReadExt as _;

use super::headers::Accepted;
use super::CHUNK_BYTES;
use crate::body::{Body, BodyError};

/// What a request path resolved to.
pub(super) enum Resolved {
    /// A regular file, opened.
    File(Box<Opened>),
    /// Nothing to serve (no such file, a directory without its index, a
    /// hidden or special file).
    Missing,
    /// A symlink on the way: refused.
    Symlink,
}

/// An opened file and what its answer needs.
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) len: u64,
    /// The requested file's name (without a `.br`/`.gz` suffix): its type
    /// and caching follow from it.
    pub(super) name: String,
    /// `br` or `gzip` when a precompressed sibling is served.
    pub(super) encoding: Option<&'static str>,
    pub(super) metadata: Metadata,
}

enum Found {
    File(PathBuf, Metadata),
    Dir(PathBuf),
    Missing,
    Symlink,
}

/// Resolves `relative` (decoded, no leading `/`) under `root`.
pub(super) fn resolve(
    root: &Path,
    relative: &str,
    index: &str,
    fallback: bool,
    accepted: Accepted,
) -> Resolved {
    let segments: Vec<&str> = relative.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| s.starts_with('.')) {
        return Resolved::Missing;
    }
    let wants_dir = relative.is_empty() || relative.ends_with('/');
    match lookup(root, &segments) {
        Found::Symlink => Resolved::Symlink,
        Found::File(..) if wants_dir => Resolved::Missing,
        Found::File(path, metadata) => open_best(&path, metadata, accepted),
        Found::Dir(dir) => match lookup(&dir, &[index]) {
            Found::File(path, metadata) => open_best(&path, metadata, accepted),
            Found::Symlink => Resolved::Symlink,
            _ => Resolved::Missing,
        },
        Found::Missing => {
            let last = segments.last().copied().unwrap_or_default();
            if fallback && !last.contains('.') {
                match lookup(root, &[index]) {
                    Found::File(path, metadata) => open_best(&path, metadata, accepted),
                    Found::Symlink => Resolved::Symlink,
                    _ => Resolved::Missing,
                }
            } else {
                Resolved::Missing
            }
        }
    }
}

/// Walks `segments` below `dir`, never through a symlink.
fn lookup(dir: &Path, segments: &[&str]) -> Found {
    let mut path = dir.to_path_buf();
    for (i, segment) in segments.iter().enumerate() {
        path.push(segment);
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            return Found::Missing;
        };
        let kind = metadata.file_type();
        let last = i + 1 == segments.len();
        if kind.is_symlink() {
            return Found::Symlink;
        }
        if kind.is_file() && last {
            return Found::File(path, metadata);
        }
        if !kind.is_dir() {
            return Found::Missing;
        }
    }
    Found::Dir(path)
}

/// Opens the best variant of `path` the client accepts: `.br`, `.gz`, or
/// the file itself.
fn open_best(path: &Path, metadata: Metadata, accepted: Accepted) -> Resolved {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let variants = [(accepted.br, "br", "br"), (accepted.gzip, "gz", "gzip")];
    for (wanted, suffix, encoding) in variants {
        if !wanted {
            continue;
        }
        let sibling = path.with_file_name(format!("{name}.{suffix}"));
        match std::fs::symlink_metadata(&sibling) {
            Ok(m) if m.file_type().is_symlink() => return Resolved::Symlink,
            Ok(m) if m.file_type().is_file() => {
                return open(&sibling, m, name, Some(encoding));
            }
            _ => {}
        }
    }
    open(path, metadata, name, None)
}

fn open(
    path: &Path,
    looked_at: Metadata,
    name: String,
    encoding: Option<&'static str>,
) -> Resolved {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        // ELOOP: the last component became a symlink.
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => return Resolved::Symlink,
        Err(err) if err.kind() == ErrorKind::NotFound => return Resolved::Missing,
        Err(_) => return Resolved::Missing,
    };
    let Ok(metadata) = file.metadata() else {
        return Resolved::Missing;
    };
    if !metadata.is_file() {
        return Resolved::Missing;
    }
    if (metadata.dev(), metadata.ino()) != (looked_at.dev(), looked_at.ino()) {
        return Resolved::Symlink;
    }
    Resolved::File(Box::new(Opened {
        file,
        len: metadata.len(),
        name,
        encoding,
        metadata,
    }))
}

/// The file's first `len` bytes as a body, read [`CHUNK_BYTES`] at a time;
/// a file that shrank meanwhile ends the body in an error (the client
/// sees a broken transfer, never a short one passed off as whole).
pub(super) fn stream(file: File, len: u64) -> Body {
    let file = tokio::fs::File::from_std(file);
    let chunks = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let size = usize::try_from(left).map_or(CHUNK_BYTES, |l| l.min(CHUNK_BYTES));
        let mut buf = vec![0u8; size];
        match file.read(&mut buf).await {
            Ok(0) => Some((Err(shrunk()), (file, 0))),
            Ok(n) => {
                buf.truncate(n);
                let frame = Frame::data(Bytes::from(buf));
                Some((Ok(frame), (file, left - n as u64)))
            }
            Err(err) => Some((Err(BodyError(Box::new(err))), (file, 0))),
        }
    });
    StreamBody::new(chunks).boxed_unsync()
}

fn shrunk() -> BodyError {
    BodyError(Box::new(std::io::Error::new(
        ErrorKind::UnexpectedEof,
        "the file shrank while it was sent",
    )))
}
