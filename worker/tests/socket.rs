//! The socket is created safely: owner/group-only mode, stale sockets
//! replaced, anything else at the path or a world-writable directory
//! refused (by the library and by the binary, with a clear error and a
//! non-zero exit), and the file removed on shutdown.

mod harness;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;

use harness::TestWorker;
use tradehabit_worker::config::Config;
use tradehabit_worker::serve::Worker;
use tradehabit_worker::socket::{BoundSocket, SocketError, SOCKET_MODE};

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
    dir
}

#[tokio::test]
async fn the_socket_is_owner_and_group_only_and_answers() {
    let worker = TestWorker::start().await;
    let metadata = fs::metadata(worker.socket()).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, SOCKET_MODE);
    assert_eq!(SOCKET_MODE, 0o660);
    assert_eq!(worker.get("/internal/ready", None).await.status, 200);
    // Nothing but the socket is left in the directory (the private staging
    // directory is gone).
    let entries: Vec<_> = fs::read_dir(worker.dir()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[tokio::test]
async fn the_socket_file_is_removed_on_shutdown() {
    let worker = TestWorker::start().await;
    let path = worker.socket().to_owned();
    let _dir = worker.dir().to_owned();
    assert!(path.exists());
    worker.stop().await;
    assert!(!path.exists());
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = private_dir();
    let path = dir.path().join("w.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    let bound = BoundSocket::bind(&path).expect("a stale socket is replaced");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        SOCKET_MODE
    );
    bound.close();
    assert!(!path.exists());
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over() {
    let worker = TestWorker::start().await;
    let error = BoundSocket::bind(worker.socket()).unwrap_err();
    assert!(matches!(error, SocketError::InUse(_)), "{error}");
    // The running worker is unaffected.
    assert_eq!(worker.get("/internal/ready", None).await.status, 200);
}

#[tokio::test]
async fn a_regular_file_a_directory_or_a_symlink_at_the_path_is_refused_and_kept() {
    let dir = private_dir();
    let file = dir.path().join("file.sock");
    fs::write(&file, b"precious").unwrap();
    let error = BoundSocket::bind(&file).unwrap_err();
    assert!(
        matches!(
            error,
            SocketError::NotASocket {
                kind: "regular file",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("regular file"));
    assert_eq!(fs::read(&file).unwrap(), b"precious");

    let sub = dir.path().join("dir.sock");
    fs::create_dir(&sub).unwrap();
    assert!(matches!(
        BoundSocket::bind(&sub).unwrap_err(),
        SocketError::NotASocket {
            kind: "directory",
            ..
        }
    ));

    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert!(matches!(
        BoundSocket::bind(&link).unwrap_err(),
        SocketError::NotASocket {
            kind: "symbolic link",
            ..
        }
    ));
}

#[tokio::test]
async fn a_world_writable_directory_is_refused_even_with_the_sticky_bit() {
    for mode in [0o777, 0o1777] {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        let path = dir.path().join("w.sock");
        let error = BoundSocket::bind(&path).unwrap_err();
        assert!(
            matches!(error, SocketError::DirectoryWorldWritable { .. }),
            "{mode:o}: {error}"
        );
        assert!(error.to_string().contains("world-writable"));
        assert!(!path.exists());
    }
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let dir = private_dir();
    let path = dir.path().join("missing").join("w.sock");
    assert!(matches!(
        BoundSocket::bind(&path).unwrap_err(),
        SocketError::DirectoryUnusable { .. }
    ));
}

#[tokio::test]
async fn the_worker_binds_through_the_same_checks() {
    let dir = private_dir();
    let file = dir.path().join("file.sock");
    fs::write(&file, b"x").unwrap();
    assert!(Worker::new(Config::new(&file)).bind().is_err());
}

#[test]
fn the_binary_exits_non_zero_with_a_clear_error_for_a_regular_file() {
    let dir = private_dir();
    let file = dir.path().join("file.sock");
    fs::write(&file, b"x").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tradehabit-worker"))
        .arg("--socket")
        .arg(&file)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert!(stderr.contains("regular file"), "{stderr}");
}

#[test]
fn the_binary_exits_non_zero_for_a_world_writable_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tradehabit-worker"))
        .env("TRADEHABIT_WORKER_SOCKET", dir.path().join("w.sock"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("world-writable"), "{stderr}");
}

#[test]
fn the_binary_reports_every_bad_flag_before_touching_the_socket() {
    let dir = private_dir();
    let path = dir.path().join("w.sock");
    let output = Command::new(env!("CARGO_BIN_EXE_tradehabit-worker"))
        .arg("--socket")
        .arg(&path)
        .args(["--max-sessions", "0", "--max-connections", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-sessions"), "{stderr}");
    assert!(stderr.contains("--max-connections"), "{stderr}");
    assert!(!path.exists());
}
