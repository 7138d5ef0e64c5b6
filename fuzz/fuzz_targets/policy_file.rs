//! Policy-file text → a validated `Config` or a list of problems.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tradehabit_gateway::Config::from_toml(text);
    }
});
