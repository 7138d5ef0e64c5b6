//! A request path → path normalisation. An accepted path must carry no
//! routing trick the upstream could decode differently.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if tradehabit_gateway::fuzzing::check_path(path).is_ok() {
        assert!(path.starts_with('/'));
        assert!(!path.contains("//") && !path.contains('\\') && !path.contains(';'));
        assert!(path.split('/').all(|s| s != "." && s != ".."));
        let lower = path.to_ascii_lowercase();
        for escape in ["%2e", "%2f", "%5c", "%3b", "%25", "%00"] {
            assert!(!lower.contains(escape));
        }
    }
});
