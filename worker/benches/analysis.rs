//! Parse + full analysis of a deterministically generated ~2 MiB /
//! ~20,000-order export and of the 92 KB `legacy-314-trades.csv`, plus the
//! whole `POST /api/analyze` (JSON reply included) and `GET /api/trades`
//! (mostly the JSON writer). Before the timings it
//! prints the peak extra resident memory of one analysis (Linux
//! `VmHWM` after resetting it through `/proc/self/clear_refs`).
//!
//! Run: `cargo bench -p tradehabit-worker --bench analysis`

use criterion::{black_box, Criterion};
use tradehabit_worker::analysis::{load, tag_trades};
use tradehabit_worker::api::{handle, Request, Session};

const LEGACY_314: &[u8] = include_bytes!("../../tests/fixtures/csv/legacy-314-trades.csv");

/// A NinjaTrader-shaped export of about `target` bytes: four contracts,
/// market entries of 1–3 lots with a stop and a target, scale-ins, partial
/// exits, stops that fill or get cancelled, and the six label columns.
pub fn generate(target: usize) -> Vec<u8> {
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut rnd = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut out = String::with_capacity(target + 256);
    out.push_str("Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Limit Price,Stop Price,Status,Trade Duration,Gap Time,Revenge Trade,Excessive Risk,Outsized Loss,No Stop Loss\n");
    let contracts = ["MNQH4", "MESH4", "NQH4", "ESH4"];
    let mut t: i64 = 0; // seconds since 2024-01-02 07:00
    let mut id: u64 = 7_301_600_000;
    let fmt = |t: i64| {
        let day = 2 + t / 86_400;
        let s = t % 86_400 + 7 * 3600;
        format!(
            "01/{:02}/2024 {}:{:02}:{:02}",
            day.min(31),
            s / 3600,
            s % 3600 / 60,
            s % 60
        )
    };
    while out.len() < target {
        let sym = contracts[rnd(4) as usize];
        let long = rnd(2) == 0;
        let (side, opp) = if long {
            ("Buy", "Sell")
        } else {
            ("Sell", "Buy")
        };
        let qty = 1 + rnd(3) as i64;
        let entry = 17_000.0 + rnd(4000) as f64 * 0.25;
        let risk = (8 + rnd(60)) as f64 * 0.25;
        let stop = if long { entry - risk } else { entry + risk };
        let hold = 30 + rnd(900) as i64;
        t += 20 + rnd(600) as i64;
        let entry_ts = fmt(t);
        let exit_ts = fmt(t + hold);
        id += 3;
        out += &format!("{id},{entry_ts},{entry_ts},{side},{sym},{qty},{entry},Market,{entry},,Filled,0:05:00,,,,,\n");
        if rnd(5) == 0 {
            // scale-in
            out += &format!(
                "{},{entry_ts},{entry_ts},{side},{sym},1,{},Market,,,Filled,,,,,,\n",
                id + 100,
                entry + 0.25
            );
        }
        let win = rnd(2) == 0;
        let target_px = if long {
            entry + risk * 1.5
        } else {
            entry - risk * 1.5
        };
        if win {
            out += &format!(
                "{},{entry_ts},,{opp},{sym},{qty},,Stop,,{stop},Cancelled,,,,,,\n",
                id + 1
            );
            out += &format!("{},{entry_ts},{exit_ts},{opp},{sym},{qty},{target_px},Limit,{target_px},,Filled,,0:10:00,,,,\n", id + 2);
        } else {
            out += &format!(
                "{},{entry_ts},{exit_ts},{opp},{sym},{qty},{stop},Stop,,{stop},Filled,,,,,,\n",
                id + 1
            );
            out += &format!(
                "{},{entry_ts},,{opp},{sym},{qty},,Limit,{target_px},,Canceled,,0:10:00,,,,\n",
                id + 2
            );
        }
        t += hold;
    }
    out.into_bytes()
}

fn analyse(bytes: &[u8]) -> usize {
    let mut d = load(bytes).expect("benchmark input analyses");
    tag_trades(&mut d.trades, 1.0, 1.0, 1.5);
    d.trades.len()
}

fn analyze_request(bytes: &[u8]) -> usize {
    let mut s = Session::new();
    let r = handle(&mut s, Request::upload("bench.csv", bytes, ""));
    assert_eq!(r.status, 200);
    r.body.len()
}

/// `GET /api/trades` over the session an upload of `bytes` left: almost all
/// of it is writing the JSON reply.
fn trades_request(session: &mut Session) -> usize {
    let request = Request {
        method: "GET",
        path: "/api/trades",
        query: "",
        content_type: None,
        body: &[],
        upload: None,
    };
    let r = handle(session, request);
    assert_eq!(r.status, 200);
    r.body.len()
}

fn status_kib(field: &str) -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak extra resident memory while running `f`, in KiB (Linux only).
fn peak_extra_kib(f: impl FnOnce()) -> Option<usize> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let base = status_kib("VmRSS:")?;
    f();
    Some(status_kib("VmHWM:")?.saturating_sub(base))
}

/// Measures one case in a fresh child process (so no earlier allocation
/// can be reused) and prints its line.
fn memory_child(case: &str) {
    let owned;
    let bytes: &[u8] = if case == "generated" {
        owned = generate(2 * 1024 * 1024 - 4096);
        &owned
    } else {
        LEGACY_314
    };
    // Fault in the code pages first with a tiny file, so that the peak
    // measures data, not code.
    let tiny: &[u8] = include_bytes!("../../tests/fixtures/csv/legacy-8-trades-1-no-stop.csv");
    black_box(analyse(tiny));
    black_box(analyze_request(tiny));
    let engine = peak_extra_kib(|| {
        black_box(analyse(bytes));
    });
    let request = peak_extra_kib(|| {
        black_box(analyze_request(bytes));
    });
    let kib = bytes.len() as f64 / 1024.0;
    if let (Some(e), Some(r)) = (engine, request) {
        println!(
            "memory {case}: csv {kib:.0} KiB, peak extra RSS: parse+analyse {e} KiB ({:.1}x), POST /api/analyze incl. JSON {r} KiB ({:.1}x)",
            e as f64 / kib,
            r as f64 / kib
        );
    }
}

fn memory_report() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    for case in ["legacy-314-trades", "generated"] {
        if let Ok(out) = std::process::Command::new(&exe)
            .env("TRADEHABIT_MEMORY_CASE", case)
            .output()
        {
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

fn main() {
    if let Ok(case) = std::env::var("TRADEHABIT_MEMORY_CASE") {
        memory_child(&case);
        return;
    }
    let big = generate(2 * 1024 * 1024 - 4096);
    let trades = analyse(&big);
    let rows = big.iter().filter(|b| **b == b'\n').count() - 1;
    println!(
        "generated: {} bytes, {rows} orders, {trades} trades",
        big.len()
    );
    memory_report();

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("analysis");
    g.sample_size(30);
    g.bench_function("parse+analyse 2MiB generated", |b| {
        b.iter(|| analyse(black_box(&big)))
    });
    g.bench_function("parse+analyse legacy-314-trades (92KB)", |b| {
        b.iter(|| analyse(black_box(LEGACY_314)))
    });
    g.bench_function("POST /api/analyze 2MiB generated", |b| {
        b.iter(|| analyze_request(black_box(&big)))
    });
    g.bench_function("POST /api/analyze legacy-314-trades", |b| {
        b.iter(|| analyze_request(black_box(LEGACY_314)))
    });
    let mut session = Session::new();
    assert_eq!(
        handle(&mut session, Request::upload("bench.csv", &big, "")).status,
        200
    );
    g.bench_function("GET /api/trades 2MiB generated", |b| {
        b.iter(|| trades_request(black_box(&mut session)))
    });
    g.finish();
    c.final_summary();
}
