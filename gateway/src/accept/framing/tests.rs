use super::*;

const BOUNDS: Bounds = Bounds {
    head_bytes: 8192,
    fields: 100,
    trailer_bytes: 4096,
};

/// Feeds `chunks` in order: the reader, what it found, and what hyper saw.
fn follow_with(bounds: Bounds, chunks: &[&[u8]]) -> (Framing, Arc<Verdicts>, Vec<u8>) {
    let found = Arc::new(Verdicts::default());
    let mut framing = Framing::new(bounds, Arc::clone(&found));
    let mut seen = Vec::new();
    for chunk in chunks {
        let shown = framing.read(chunk);
        seen.extend_from_slice(&shown.released);
        seen.extend_from_slice(&chunk[..shown.passed]);
        seen.extend_from_slice(&shown.injected);
    }
    (framing, found, seen)
}

fn follow(chunks: &[&[u8]]) -> (Framing, Arc<Verdicts>) {
    let (framing, found, _) = follow_with(BOUNDS, chunks);
    (framing, found)
}

/// What the service would be told for the first `count` requests.
fn verdicts(found: &Verdicts, count: usize) -> Vec<Option<HeadRefusal>> {
    (0..count).map(|_| found.next_request().1).collect()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const CHUNKED: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn both_length_and_chunked_is_found_in_either_order() {
    for head in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
    ] {
        let (framing, found) = follow(&[head, b"0\r\n\r\n"]);
        assert_eq!(framing.phase, Phase::Passing);
        assert_eq!(verdicts(&found, 1), [Some(HeadRefusal::LengthAndChunked)]);
    }
}

#[test]
fn repeated_equal_lengths_are_found() {
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
    let (_, found) = follow(&[head]);
    assert_eq!(verdicts(&found, 1), [Some(HeadRefusal::SeveralLengths)]);
}

#[test]
fn the_ambiguous_request_is_numbered_after_bodies_of_both_kinds() {
    // A request with a length, a chunked one with extensions and a trailer,
    // a bodiless one, then the ambiguous one: pipelined and split at
    // awkward places. hyper sees every byte, in order.
    let stream: Vec<u8> = [
        &b"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"[..],
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"4;ext=1\r\nwxyz\r\n3 ; q=\"a b\"\r\na\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n",
        GET,
        b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ]
    .concat();
    for split in [1, 2, 3, 7, 64, stream.len()] {
        let chunks: Vec<&[u8]> = stream.chunks(split).collect();
        let (framing, found, seen) = follow_with(BOUNDS, &chunks);
        assert_eq!(framing.heads, 4, "split {split}");
        assert_eq!(seen, stream, "split {split}");
        assert_eq!(
            verdicts(&found, 5),
            [
                None,
                None,
                None,
                Some(HeadRefusal::LengthAndChunked),
                Some(HeadRefusal::Unfollowed)
            ],
            "split {split}"
        );
    }
}

#[test]
fn body_bytes_that_look_like_a_head_are_not_read_as_one() {
    let smuggled = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    );
    let chunked = format!("{:x}\r\n", smuggled.len());
    let (framing, found) = follow(&[
        head.as_bytes(),
        smuggled,
        CHUNKED,
        chunked.as_bytes(),
        smuggled,
        b"\r\n0\r\n\r\n",
        GET,
    ]);
    assert_eq!(framing.phase, Phase::Head);
    assert_eq!(framing.heads, 3);
    assert_eq!(verdicts(&found, 3), [None, None, None]);
}

#[test]
fn what_it_cannot_follow_passes_through_and_refuses_what_comes_after() {
    let cases: [&[u8]; 4] = [
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    ];
    for case in cases {
        let (framing, found, seen) = follow_with(BOUNDS, &[case, GET]);
        let what = String::from_utf8_lossy(case);
        assert_eq!(framing.phase, Phase::Passing, "{what:?}");
        assert_eq!(seen, [case, GET].concat(), "{what:?}");
        assert!(found.ends_connection(1), "{what:?}");
        // The head it stopped at is left to the policy (or to hyper, which
        // refuses the malformed ones); anything after is refused.
        assert_eq!(
            verdicts(&found, 3),
            [
                None,
                Some(HeadRefusal::Unfollowed),
                Some(HeadRefusal::Unfollowed)
            ],
            "{what:?}"
        );
    }
}

#[test]
fn a_followed_connection_never_counts_as_stopped() {
    let (framing, found) = follow(&[
        GET,
        GET,
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
        CHUNKED,
        b"1\r\na\r\n0\r\n\r\n",
    ]);
    assert_eq!(framing.phase, Phase::Head);
    assert!(!found.ends_connection(4));
    assert_eq!(verdicts(&found, 4), [None, None, None, None]);
}

#[test]
fn requests_read_whole_before_it_stopped_are_answered_as_usual() {
    let upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    let (_, found) = follow(&[GET, GET, upgrade, GET]);
    let ends: Vec<bool> = (1..=4).map(|n| found.ends_connection(n)).collect();
    assert_eq!(ends, [false, false, true, true]);
    assert_eq!(
        verdicts(&found, 4),
        [None, None, None, Some(HeadRefusal::Unfollowed)]
    );
}

#[test]
fn a_partial_head_line_is_held_back_until_its_line_feed() {
    let found = Arc::new(Verdicts::default());
    let mut framing = Framing::new(BOUNDS, found);
    let shown = framing.read(b"GET / HTTP/1.1\r\nHost: exa");
    assert_eq!((shown.passed, shown.released.len()), (16, 0));
    assert_eq!(framing.read(b"mple.c"), Shown::default());
    let shown = framing.read(b"om\r\n\r\n");
    assert_eq!(shown.released, b"Host: example.c");
    assert_eq!(shown.passed, 6);
    assert!(shown.injected.is_empty());
}

#[test]
fn a_head_over_its_bound_is_ended_after_the_lines_already_shown() {
    let bounds = Bounds {
        head_bytes: 64,
        ..BOUNDS
    };
    let head = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(64)
    );
    for split in [1, 5, head.len()] {
        let chunks: Vec<&[u8]> = head.as_bytes().chunks(split).collect();
        let (framing, found, seen) = follow_with(bounds, &chunks);
        assert_eq!(seen, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", "split {split}");
        assert!(framing.is_discarding());
        assert_eq!(verdicts(&found, 2), [Some(HeadRefusal::TooLarge), None]);
    }
}

#[test]
fn more_fields_than_allowed_end_the_head_at_the_last_allowed_one() {
    let bounds = Bounds {
        fields: 2,
        ..BOUNDS
    };
    let head = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let (framing, found, seen) = follow_with(bounds, &[head]);
    assert_eq!(seen, b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n");
    assert_eq!(framing.heads, 1);
    assert_eq!(verdicts(&found, 1), [Some(HeadRefusal::TooManyFields)]);
}

#[test]
fn a_request_line_over_its_bound_gets_a_stand_in() {
    let bounds = Bounds {
        head_bytes: 300,
        ..BOUNDS
    };
    let target = format!("/api/{}", "q".repeat(400));
    let line = format!("POST {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (_, found, seen) = follow_with(bounds, &[line.as_bytes()]);
    let expected = format!("POST {} HTTP/1.1\r\n\r\n", &target[..STAND_IN_TARGET_BYTES]);
    assert_eq!(String::from_utf8_lossy(&seen), expected);
    assert_eq!(verdicts(&found, 1), [Some(HeadRefusal::RequestLineTooLong)]);
    // Only empty lines, or no method: a line hyper refuses, no request.
    let (_, _, seen) = follow_with(bounds, &[&b"\r\n".repeat(200)]);
    assert!(seen.ends_with(b"\0\r\n\r\n"));
}

#[test]
fn lenient_chunk_lines_are_refused_before_hyper_sees_the_bad_byte() {
    let cases: [(&[u8], &[u8], ChunkedError); 5] = [
        (b"2 \r\nab\r\n0\r\n\r\n", b"2 ", ChunkedError::Whitespace),
        (
            b"2;a\0b\r\nab\r\n0\r\n\r\n",
            b"2;a",
            ChunkedError::ControlByte,
        ),
        (b"2\nab\r\n0\r\n\r\n", b"2", ChunkedError::LineEnd),
        (
            b"2\r\nabXY0\r\n\r\n",
            b"2\r\nab",
            ChunkedError::DataNotEnded,
        ),
        (
            b"0\r\nX: \x01\r\n\r\n",
            b"0\r\nX: ",
            ChunkedError::ControlByte,
        ),
    ];
    for (body, shown_body, why) in cases {
        let stream = [CHUNKED, body, GET].concat();
        for split in [1, 3, stream.len()] {
            let chunks: Vec<&[u8]> = stream.chunks(split).collect();
            let (framing, found, seen) = follow_with(BOUNDS, &chunks);
            let what = String::from_utf8_lossy(body);
            assert_eq!(
                seen,
                [CHUNKED, shown_body].concat(),
                "{what:?} split {split}"
            );
            assert_eq!(framing.body_refusal().map(|r| r.0), Some(why), "{what:?}");
            assert!(found.body_refused());
        }
    }
}

#[test]
fn extensions_are_bounded_over_a_whole_body() {
    let ext = format!(";e={}", "v".repeat(chunked::MAX_EXT_BYTES_PER_LINE - 3));
    let mut body = Vec::new();
    for _ in 0..=chunked::MAX_EXT_BYTES_PER_BODY / chunked::MAX_EXT_BYTES_PER_LINE {
        body.extend_from_slice(format!("1{ext}\r\nx\r\n").as_bytes());
    }
    let (framing, _) = follow(&[CHUNKED, &body]);
    assert_eq!(
        framing.body_refusal().map(|r| r.0),
        Some(ChunkedError::ExtensionsTooLong)
    );
}

#[test]
fn refusal_codes_round_trip() {
    for why in HeadRefusal::ALL {
        assert_eq!(HeadRefusal::from_code(why.code()), Some(why));
    }
    assert_eq!(HeadRefusal::from_code(0), None);
}
