//! Fuzz smoke: the five fuzz targets' entry points (CSV upload through the
//! engine, multipart extraction, the policy-file loader, path
//! normalisation, the HTTP/1.1 framing reader) over a few thousand deterministic mutations of small
//! fixtures, on stable Rust in seconds. The long runs are cargo-fuzz's
//! (`fuzz/`, see `docs/security-controls.md`); this keeps every build
//! honest against panics on hostile input.

use bytes::Bytes;
use tradehabit_e2e::attack::{fixture, multipart, sample_csv};
use tradehabit_worker::api::{self, Request, Session};

/// A small deterministic PRNG (xorshift64*), so every failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers under test.
const INTERESTING: &[&[u8]] = &[
    b",",
    b"\"",
    b"\r\n",
    b"\n",
    b"\r",
    b"=",
    b"+",
    b"-",
    b"@",
    b"\t",
    b"%",
    b"%2e",
    b"%2f",
    b"..",
    b"/",
    b"\\",
    b";",
    b"\0",
    b"\xff",
    b"\xc3",
    b"e308",
    b"NaN",
    b"inf",
    b"-0",
    b"99999999999999999999",
    b"1e400",
    b"--",
    b"\r\n\r\n",
    b"[",
    b"]",
    b"=\"",
    b"{",
    b"}",
    b"01/02/2024 7:30:00",
    b"Filled",
    b"Buy",
    b"Sell",
    b"Stop",
    b"Market",
    b"Limit",
];

/// One mutation of `seed`: a few random byte flips, insertions of
/// interesting tokens, deletions, duplications and truncations.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(6) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + rng.below(64)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(256)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            4 => data.truncate(at),
            _ => {
                let byte = rng.next() as u8;
                data.insert(at, byte);
            }
        }
    }
    data
}

fn upload(session: &mut Session, content: &[u8]) -> api::Reply {
    api::handle(session, Request::upload("orders.csv", content, ""))
}

fn get(session: &mut Session, path: &str, query: &str) -> api::Reply {
    api::handle(
        session,
        Request {
            method: "GET",
            path,
            query,
            content_type: None,
            body: &[],
            upload: None,
        },
    )
}

#[test]
fn csv_uploads_never_panic_and_answer_200_or_400_json() {
    let seeds = [
        sample_csv(),
        fixture("legacy-8-trades-1-no-stop.csv"),
        fixture("legacy-all-no-stops.csv"),
    ];
    let mut rng = Rng(0x5eed_0001);
    let mut accepted = 0;
    for case in 0..1500 {
        let input = mutate(&mut rng, &seeds[case % seeds.len()]);
        let mut session = Session::new();
        let reply = upload(&mut session, &input);
        assert!(
            reply.status == 200 || reply.status == 400,
            "case {case}: status {}",
            reply.status
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("case {case}: not JSON: {e}"));
        if reply.status == 200 {
            accepted += 1;
            // The engine's read side over whatever was accepted.
            for (path, query) in [
                ("/api/summary", ""),
                ("/api/trades", ""),
                ("/api/losses", "sigma=0.1"),
                ("/api/revenge", "k=10"),
                ("/api/insights", ""),
                ("/api/risk-sizing", ""),
                ("/api/excessive-risk", "sigma_risk=5"),
                ("/api/winrate-payoff", ""),
                ("/api/stop-loss", ""),
            ] {
                let reply = get(&mut session, path, query);
                assert!(reply.status < 500, "case {case}: {path} {}", reply.status);
            }
        } else {
            assert_eq!(body["status"], "ERROR", "case {case}: {body}");
        }
    }
    // The mutations are small enough that many inputs stay valid, so the
    // analysis side is exercised too.
    assert!(accepted > 100, "only {accepted} accepted");
}

#[tokio::test]
async fn multipart_extraction_never_panics_and_refuses_with_4xx() {
    let csv = sample_csv();
    let (content_type, good) =
        multipart(&[("note", None, b"hello"), ("file", Some("orders.csv"), &csv)]);
    let mut rng = Rng(0x5eed_0002);
    let mut found = 0;
    for case in 0..3000 {
        let body = mutate(&mut rng, &good);
        let content_type = if case % 10 == 0 {
            String::from_utf8_lossy(&mutate(&mut rng, content_type.as_bytes())).into_owned()
        } else {
            content_type.clone()
        };
        match tradehabit_worker::upload::read_upload_bytes(Some(&content_type), Bytes::from(body))
            .await
        {
            Ok(Some((_, length))) => {
                found += 1;
                assert!(length <= api::MAX_UPLOAD_BYTES + 1, "case {case}");
            }
            Ok(None) => {}
            Err(status) => assert!(
                status == 400 || status == 413 || status == 415,
                "case {case}: status {status}"
            ),
        }
    }
    assert!(found > 100, "only {found} file parts found");
}

#[test]
fn policy_loader_never_panics() {
    let example = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.example.toml"),
    )
    .unwrap();
    let mut rng = Rng(0x5eed_0003);
    let mut errors = 0;
    for _ in 0..2000 {
        let text = String::from_utf8_lossy(&mutate(&mut rng, &example)).into_owned();
        if let Err(error) = tradehabit_gateway::Config::from_toml(&text) {
            errors += 1;
            assert!(!error.to_string().is_empty());
        }
    }
    assert!(errors > 0);
}

#[test]
fn accepted_paths_have_no_routing_tricks() {
    let seeds: &[&[u8]] = &[
        b"/api/summary",
        b"/api/goals/calculate",
        b"/api/x%20y",
        b"/files/caf%C3%A9",
        b"/api/a..b",
    ];
    let mut rng = Rng(0x5eed_0004);
    let mut accepted = 0;
    for case in 0..20_000 {
        let bytes = mutate(&mut rng, seeds[case % seeds.len()]);
        let Ok(path) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if tradehabit_gateway::fuzzing::check_path(path).is_err() {
            continue;
        }
        accepted += 1;
        assert!(path.starts_with('/'), "{path:?}");
        assert!(!path.contains("//"), "{path:?}");
        assert!(!path.contains('\\') && !path.contains(';'), "{path:?}");
        assert!(path.split('/').all(|s| s != "." && s != ".."), "{path:?}");
        // What the upstream would decode cannot differ in routing terms.
        let lower = path.to_ascii_lowercase();
        for escape in ["%2e", "%2f", "%5c", "%3b", "%25", "%00"] {
            assert!(!lower.contains(escape), "{path:?}");
        }
        assert!(path.bytes().all(|b| b >= 0x20 && b != 0x7f), "{path:?}");
    }
    assert!(accepted > 1000, "only {accepted} accepted");
}

#[test]
fn the_framing_reader_does_not_depend_on_how_bytes_arrive() {
    let seeds_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/framing");
    // A seed's first 8 bytes choose the fuzz target's cuts; the rest is the stream.
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&seeds_dir)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap()[8..].to_vec())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 4, "seeds in {}", seeds_dir.display());
    let mut rng = Rng(0x5eed_0005);
    let (mut refused, mut read, mut bodies, mut unfollowed) = (0, 0, 0, 0);
    for case in 0..3000 {
        let stream = mutate(&mut rng, &seeds[case % seeds.len()]);
        let whole = tradehabit_gateway::fuzzing::follow_framing(&stream, &[]);
        let cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(stream.len())).collect();
        assert_eq!(
            tradehabit_gateway::fuzzing::follow_framing(&stream, &cuts),
            whole,
            "case {case}: cut at {cuts:?}"
        );
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(
            tradehabit_gateway::fuzzing::follow_framing(&stream, &every_byte),
            whole,
            "case {case}: byte by byte"
        );
        read += whole.heads;
        if let Some((request, _)) = whole.refused_head {
            refused += 1;
            assert!(request >= 1 && request <= whole.heads, "case {case}");
        }
        if let Some(followed) = whole.unfollowed_after {
            unfollowed += 1;
            assert_eq!(followed, whole.heads, "case {case}");
        }
        if whole.refused_body.is_some() {
            bodies += 1;
        }
        if whole.refused_head.is_none() && whole.refused_body.is_none() {
            // Nothing refused: hyper sees what the client sent (held-back
            // lines of an unfinished head aside).
            assert!(stream.starts_with(&whole.shown), "case {case}");
        }
    }
    assert!(
        refused > 100 && read > 2000 && bodies > 20 && unfollowed > 100,
        "{refused} heads refused, {bodies} bodies refused, {read} heads, \
         {unfollowed} connections not followed to the end"
    );
}
