//! A client's HTTP/1.1 byte stream → the gateway's framing reader. It must
//! never panic, and what it concludes (heads read, the request or body it
//! refuses, where it stops following, every byte hyper is shown) must not
//! depend on how the stream arrives in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradehabit_gateway::fuzzing::follow_framing;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose where the stream is cut; the rest is the stream.
    let (choice, stream) = data.split_at(data.len().min(8));
    let cuts: Vec<usize> = choice
        .iter()
        .scan(0usize, |at, &step| {
            *at += usize::from(step) + 1;
            Some(*at)
        })
        .collect();
    let whole = follow_framing(stream, &[]);
    assert_eq!(follow_framing(stream, &cuts), whole);
    let every_byte: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(follow_framing(stream, &every_byte), whole);
    if let Some((request, _)) = whole.refused_head {
        assert!(request >= 1 && request <= whole.heads);
    }
    // Once it stops following, it reads no further head.
    if let Some(followed) = whole.unfollowed_after {
        assert_eq!(followed, whole.heads);
    }
    // Nothing but what the client sent, and at most the end of one head
    // (or a stand-in request line) added.
    assert!(whole.shown.len() <= stream.len() + 512);
    if whole.refused_head.is_none() && whole.refused_body.is_none() {
        assert!(stream.starts_with(&whole.shown));
    }
});
