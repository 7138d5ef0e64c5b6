//! CSV bytes → the engine, as an upload to `POST /api/analyze`; then the
//! read side over whatever was accepted. Never a panic, never a 5xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradehabit_worker::api::{self, Request, Session};

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new();
    let reply = api::handle(&mut session, Request::upload("orders.csv", data, ""));
    assert!(
        reply.status == 200 || reply.status == 400,
        "{}",
        reply.status
    );
    if reply.status == 200 {
        for path in [
            "/api/summary",
            "/api/trades",
            "/api/insights",
            "/api/stop-loss",
        ] {
            let reply = api::handle(
                &mut session,
                Request {
                    method: "GET",
                    path,
                    query: "",
                    content_type: None,
                    body: &[],
                    upload: None,
                },
            );
            assert!(reply.status < 500, "{path}: {}", reply.status);
        }
    }
});
