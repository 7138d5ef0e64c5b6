//! A request body → the worker's multipart `file` part extraction. The
//! first line of the input is the `Content-Type`, the rest the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let content_type = String::from_utf8_lossy(&data[..split]).into_owned();
    let body = bytes::Bytes::copy_from_slice(data.get(split + 1..).unwrap_or_default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(tradehabit_worker::upload::read_upload_bytes(
        Some(&content_type),
        body,
    ));
    if let Err(status) = outcome {
        assert!((400..500).contains(&status), "{status}");
    }
});
