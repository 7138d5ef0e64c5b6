//! The gateway's own exchange against a scripted upstream on a real Unix
//! socket: what it writes, how it reads every framing, when it keeps a
//! connection, when it sends a request again.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::*;
use crate::config::UpstreamAddress;
use crate::per_ip::PerIp;
use crate::proxy::Connector;

/// What the scripted upstream does with the next request it reads.
enum Act {
    /// Writes these bytes and waits for the next request.
    Answer(&'static [u8]),
    /// Writes these bytes, then closes the connection.
    AnswerAndClose(&'static [u8]),
    /// Closes the connection without answering.
    Close,
    /// Writes the answer, and a moment later the stray bytes.
    AnswerThenStray(&'static [u8], &'static [u8]),
}

/// An upstream that plays `acts` in order, across connections, and counts
/// the connections it accepted and the request heads it read.
struct Scripted {
    _dir: tempfile::TempDir,
    pool: Arc<Pool>,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

fn scripted(acts: Vec<Act>) -> Scripted {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let acts = Arc::new(Mutex::new(VecDeque::from(acts)));
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (counted, seen) = (Arc::clone(&connections), Arc::clone(&heads));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(play(stream, Arc::clone(&acts), Arc::clone(&seen)));
        }
    });
    let connector = Connector::new(UpstreamAddress::Unix(path), Duration::from_secs(5));
    Scripted {
        _dir: dir,
        pool: Pool::new(connector, 8, Duration::from_secs(60), 1),
        connections,
        heads,
    }
}

async fn play(
    mut stream: UnixStream,
    acts: Arc<Mutex<VecDeque<Act>>>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let Some(head) = read_head(&mut stream).await else {
            return;
        };
        heads.lock().unwrap().push(head);
        let act = acts.lock().unwrap().pop_front();
        match act {
            Some(Act::Answer(bytes)) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Some(Act::AnswerAndClose(bytes)) => {
                let _ = stream.write_all(bytes).await;
                return;
            }
            Some(Act::AnswerThenStray(answer, stray)) => {
                let _ = stream.write_all(answer).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = stream.write_all(stray).await;
            }
            Some(Act::Close) | None => return,
        }
    }
}

/// One request head (the requests here have no body).
async fn read_head(stream: &mut UnixStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8(head).unwrap())
}

fn request(method: Method, target: &str) -> Request<ForwardBody> {
    Request::builder()
        .method(method)
        .uri(target)
        .header("host", "api.example")
        .body(ForwardBody::Buffered(None))
        .unwrap()
}

/// An upstream slot, and the semaphore that shows whether it is held.
fn slot() -> (Slot, Arc<Semaphore>) {
    let total = Arc::new(Semaphore::new(1));
    let per_ip = Arc::new(PerIp::default());
    let slot = Slot {
        _total: Arc::clone(&total).try_acquire_owned().unwrap(),
        _client: per_ip.try_take(IpAddr::V4(Ipv4Addr::LOCALHOST), 1).unwrap(),
    };
    (slot, total)
}

/// Sends `method target` and reads the whole answer, buffering answers up
/// to `limit` bytes.
async fn fetch(
    up: &Scripted,
    method: Method,
    target: &str,
    limit: usize,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let answer = exchange(&up.pool, request(method, target))
        .await
        .map_err(|error| error.to_string())?;
    let (slot, _) = slot();
    let response = answer
        .with_body(limit, &up.pool, slot)
        .await
        .map_err(|rejection| format!("{rejection:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello";

#[tokio::test]
async fn the_request_head_goes_out_as_written_and_the_answer_comes_back() {
    let up = scripted(vec![Act::Answer(OK_HELLO)]);
    let (status, headers, body) = fetch(&up, Method::GET, "/api/x?y=1", 1 << 20)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "hello");
    assert_eq!(headers["x-a"], "1");
    assert_eq!(headers["content-length"], "5");
    assert_eq!(
        up.heads.lock().unwrap()[0],
        "GET /api/x?y=1 HTTP/1.1\r\nhost: api.example\r\n\r\n"
    );
}

#[tokio::test]
async fn a_connection_is_reused_after_each_kind_of_framed_answer() {
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\nT: 1\r\n\r\n";
    let up = scripted(vec![
        Act::Answer(OK_HELLO),
        Act::Answer(chunked),
        Act::Answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Act::Answer(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n"),
        // A streamed (over the buffer limit) length-framed answer.
        Act::Answer(OK_HELLO),
        Act::Answer(OK_HELLO),
    ]);
    for limit in [1 << 20, 1 << 20, 1 << 20, 1 << 20, 2] {
        let (_, _, body) = fetch(&up, Method::GET, "/", limit).await.unwrap();
        assert!(body == "hello" || body.is_empty(), "{body:?}");
    }
    let (_, headers, body) = fetch(&up, Method::HEAD, "/", 1 << 20).await.unwrap();
    assert!(body.is_empty(), "a HEAD answer has no body");
    assert_eq!(headers["content-length"], "5", "but keeps its length");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    assert_eq!(up.heads.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn a_chunked_answer_loses_its_length_and_trailers() {
    let up = scripted(vec![Act::Answer(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
    )]);
    let (_, headers, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    assert_eq!(body, "hello");
    assert!(headers.get("content-length").is_none());
    assert!(headers.get("x-t").is_none());
}

#[tokio::test]
async fn interim_answers_are_skipped_and_a_switch_is_refused() {
    let up = scripted(vec![
        Act::Answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
        Act::Answer(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n"),
    ]);
    let (status, headers, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"hello"[..]));
    assert!(
        headers.get("link").is_none(),
        "an interim answer's fields are not kept"
    );
    let refused = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap_err();
    assert!(refused.contains("switching protocols"), "{refused}");
}

#[tokio::test]
async fn an_answer_read_to_the_close_ends_there_and_its_connection_is_not_kept() {
    let up = scripted(vec![
        Act::AnswerAndClose(b"HTTP/1.1 200 OK\r\n\r\nall of it"),
        Act::Answer(OK_HELLO),
    ]);
    let (_, _, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    assert_eq!(body, "all of it");
    let (_, _, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    assert_eq!(body, "hello");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_is_not_kept_after_close_http_1_0_or_stray_bytes() {
    for first in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nforged",
    ] {
        let up = scripted(vec![Act::Answer(first), Act::Answer(OK_HELLO)]);
        let (_, _, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
        assert_eq!(body, "hello");
        let (_, _, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
        assert_eq!(body, "hello", "never the stray answer");
        assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn bytes_that_come_while_idle_retire_the_connection() {
    let up = scripted(vec![
        Act::AnswerThenStray(
            OK_HELLO,
            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged",
        ),
        Act::Answer(OK_HELLO),
    ]);
    fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    // The event loop sees the stray answer arrive while this task sleeps.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, _, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    assert_eq!(body, "hello", "never the stray answer");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    for (answer, expected) in [
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"[..],
            "Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            "Transfer-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            "Transfer-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n",
            "malformed answer head",
        ),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed answer head"),
    ] {
        let up = scripted(vec![Act::Answer(answer)]);
        let error = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap_err();
        assert!(error.contains(expected), "{error} for {answer:?}");
    }
}

#[tokio::test]
async fn a_head_over_the_bound_is_refused() {
    static HUGE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() <= MAX_HEAD {
            head.extend_from_slice(b"x-filler: ");
            head.extend_from_slice(&[b'a'; 2000]);
            head.extend_from_slice(b"\r\n");
        }
        head
    });
    let up = scripted(vec![Act::Answer(HUGE.as_slice())]);
    let error = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap_err();
    assert!(error.contains("answer head over"), "{error}");
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_buffered_or_streamed() {
    for limit in [1 << 20, 2] {
        let up = scripted(vec![Act::AnswerAndClose(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello",
        )]);
        let error = fetch(&up, Method::GET, "/", limit).await.unwrap_err();
        assert!(error.contains("closed the connection within"), "{error}");
    }
    let up = scripted(vec![Act::AnswerAndClose(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )]);
    let error = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap_err();
    assert!(error.contains("closed the connection within"), "{error}");
}

#[tokio::test]
async fn a_stale_connection_is_retried_once_when_that_is_safe() {
    // The first connection answers once, then reads the next request and
    // closes without a word (the upstream's keep-alive timer firing).
    let up = scripted(vec![
        Act::Answer(OK_HELLO),
        Act::Close,
        Act::Answer(OK_HELLO),
    ]);
    fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    let (_, _, body) = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    assert_eq!(body, "hello", "the GET was sent again");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    assert_eq!(up.heads.lock().unwrap().len(), 3);

    // A POST that was written is not sent twice, even without a body.
    let up = scripted(vec![
        Act::Answer(OK_HELLO),
        Act::Close,
        Act::Answer(OK_HELLO),
    ]);
    fetch(&up, Method::GET, "/", 1 << 20).await.unwrap();
    let error = fetch(&up, Method::POST, "/", 1 << 20).await.unwrap_err();
    assert!(error.contains("before answering"), "{error}");
    assert_eq!(up.heads.lock().unwrap().len(), 2);

    // A new connection that fails is not retried.
    let up = scripted(vec![Act::Close]);
    let error = fetch(&up, Method::GET, "/", 1 << 20).await.unwrap_err();
    assert!(error.contains("before answering"), "{error}");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_buffered_answer_frees_its_slot_at_once_a_streamed_one_at_its_end() {
    let up = scripted(vec![Act::Answer(OK_HELLO), Act::Answer(OK_HELLO)]);
    let (slot_held, total) = slot();
    let answer = exchange(&up.pool, request(Method::GET, "/")).await.unwrap();
    let response = answer
        .with_body(1 << 20, &up.pool, slot_held)
        .await
        .unwrap();
    assert_eq!(
        total.available_permits(),
        1,
        "buffered: slot free before the body is sent"
    );
    drop(response);
    assert_eq!(up.pool.idle_count(), 1);

    let (slot_held, total) = slot();
    let answer = exchange(&up.pool, request(Method::GET, "/")).await.unwrap();
    let response = answer.with_body(2, &up.pool, slot_held).await.unwrap();
    assert_eq!(up.pool.idle_count(), 0);
    assert_eq!(total.available_permits(), 0, "streamed: slot held");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello");
    assert_eq!(total.available_permits(), 1);
    assert_eq!(up.pool.idle_count(), 1, "and the connection back");
}

#[tokio::test]
async fn a_streamed_answer_is_read_only_as_fast_as_it_is_taken() {
    const TOTAL: usize = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&written);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_head(&mut stream).await.unwrap();
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {TOTAL}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let block = vec![b'x'; 64 * 1024];
        while counted.load(Ordering::SeqCst) < TOTAL {
            if stream.write_all(&block).await.is_err() {
                return;
            }
            counted.fetch_add(block.len(), Ordering::SeqCst);
        }
    });
    let connector = Connector::new(UpstreamAddress::Unix(path), Duration::from_secs(5));
    let pool = Pool::new(connector, 8, Duration::from_secs(60), 1);
    let answer = exchange(&pool, request(Method::GET, "/")).await.unwrap();
    let (slot_held, _) = slot();
    let mut body = answer
        .with_body(1 << 20, &pool, slot_held)
        .await
        .unwrap()
        .into_body();
    assert_eq!(body.size_hint().exact(), Some(TOTAL as u64));
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(!first.is_empty());
    // Give the upstream time to write all it can while nobody reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent < 8 << 20,
        "{sent} bytes written: the gateway read ahead of its client"
    );
    let mut read = first.len();
    while let Some(frame) = body.frame().await {
        read += frame.unwrap().into_data().unwrap().len();
    }
    assert_eq!(read, TOTAL);
}
