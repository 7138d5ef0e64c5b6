//! Listening stage: create the worker's Unix socket safely.
//!
//! The socket is the worker's only door, so where and how it is created is
//! a security decision:
//!
//! * its directory must exist and must not be world-writable (sticky bit or
//!   not): anyone who can write there could replace the socket or plant
//!   something in its place. Use a directory owned by the service, e.g.
//!   `/run/tradehabit` with mode 0750 or 0770, not `/tmp`;
//! * the socket gets mode 0660 (owner and group only: run the gateway in the
//!   worker's group). It is bound inside a fresh private (0700) directory,
//!   chmod-ed, then renamed into place, so it is never connectable with
//!   looser permissions, whatever the umask;
//! * a file already at the path is replaced only if it is a socket nobody
//!   answers on (a stale one from a crash). A live socket, a regular file,
//!   a directory or a symlink make start-up fail with a clear error;
//! * on shutdown the socket file is removed if it is still ours.
//!
//! There is no TCP listener.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the socket file: read/write for owner and group only.
pub const SOCKET_MODE: u32 = 0o660;

/// Why the socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The path has no file name.
    #[error("socket path {0:?} does not name a file")]
    NoFileName(PathBuf),
    /// The socket's directory does not exist or cannot be read.
    #[error("socket directory {dir:?} is not usable: {source}")]
    DirectoryUnusable {
        /// The directory.
        dir: PathBuf,
        /// The error from the OS.
        source: io::Error,
    },
    /// The socket's directory is not a directory.
    #[error("socket directory {0:?} is not a directory")]
    NotADirectory(PathBuf),
    /// Anyone can write to the socket's directory.
    #[error(
        "socket directory {dir:?} is world-writable (mode {mode:o}); use a directory only the \
         service's user and group can write to, e.g. /run/tradehabit"
    )]
    DirectoryWorldWritable {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Something other than a socket is at the path.
    #[error("{path:?} exists and is a {kind}, not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// A process is listening on the socket already.
    #[error("{0:?} is a live socket (another worker is listening on it)")]
    InUse(PathBuf),
    /// Inspecting, binding, chmod-ing or moving the socket failed.
    #[error("could not {action} {path:?}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error from the OS.
        source: io::Error,
    },
}

/// The bound listener; removes its socket file when closed.
#[derive(Debug)]
pub struct BoundSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    /// Device and inode of our socket file, so that closing never removes a
    /// successor's socket.
    identity: (u64, u64),
}

impl BoundSocket {
    /// Creates the socket at `path` following the rules in the module doc.
    /// Must be called inside a Tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        path.file_name()
            .ok_or_else(|| SocketError::NoFileName(path.to_owned()))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        check_directory(dir)?;
        clear_stale(path)?;

        let private = dir.join(format!(".tradehabit-worker-{}", std::process::id()));
        let listener = bind_privately(&private, path)?;
        // The private directory is empty again once the socket moved out.
        let _ = fs::remove_dir(&private);

        let metadata = fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
        listener
            .set_nonblocking(true)
            .map_err(io_error("configure", path))?;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(io_error("register", path))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener.
    pub fn listener(&self) -> &tokio::net::UnixListener {
        &self.listener
    }

    /// Stops listening and removes the socket file if it is still ours.
    pub fn close(self) {
        let Self {
            listener,
            path,
            identity,
        } = self;
        drop(listener);
        match fs::symlink_metadata(&path) {
            Ok(metadata) if (metadata.dev(), metadata.ino()) == identity => {
                if let Err(error) = fs::remove_file(&path) {
                    tracing::warn!(%error, "could not remove the socket file");
                }
            }
            _ => tracing::debug!("socket file already gone or replaced; left alone"),
        }
    }
}

fn check_directory(dir: &Path) -> Result<(), SocketError> {
    let metadata = fs::metadata(dir).map_err(|source| SocketError::DirectoryUnusable {
        dir: dir.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(SocketError::NotADirectory(dir.to_owned()));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(SocketError::DirectoryWorldWritable {
            dir: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Removes a stale socket at `path`; refuses anything else that is there.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("inspect", path)(error)),
    };
    let file_type = metadata.file_type();
    if !file_type.is_socket() {
        let kind = if file_type.is_file() {
            "regular file"
        } else if file_type.is_dir() {
            "directory"
        } else if file_type.is_symlink() {
            "symbolic link"
        } else {
            "special file"
        };
        return Err(SocketError::NotASocket {
            path: path.to_owned(),
            kind,
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse(path.to_owned())),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("replacing a stale socket file");
            fs::remove_file(path).map_err(io_error("remove the stale socket", path))
        }
        Err(error) => Err(io_error("probe the existing socket", path)(error)),
    }
}

/// Binds in a private directory, sets the mode, then moves the socket to
/// `path`: nobody can connect before the mode is right.
fn bind_privately(
    private: &Path,
    path: &Path,
) -> Result<std::os::unix::net::UnixListener, SocketError> {
    match fs::remove_dir_all(private) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("clear", private)(error)),
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(private)
        .map_err(io_error("create", private))?;
    let staged = private.join("s");
    let result = (|| {
        let listener =
            std::os::unix::net::UnixListener::bind(&staged).map_err(io_error("bind", path))?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(io_error("set permissions on", path))?;
        fs::rename(&staged, path).map_err(io_error("move the socket to", path))?;
        Ok(listener)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(private);
    }
    result
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SocketError {
    let path = path.to_owned();
    move |source| SocketError::Io {
        action,
        path,
        source,
    }
}
