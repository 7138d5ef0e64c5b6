//! The gateway's signature on the upstream hop: with `[upstream] hmac_key`
//! set, every forwarded request (and every readiness or metrics probe)
//! carries `x-tradehabit-signature` over its identity headers, method,
//! path and query, and the time (`tradehabit_shared::signature`). The
//! worker, given the same key, refuses requests without a valid one. The
//! key is never logged; a client-sent copy of the header was removed with
//! the other gateway-owned headers.

use http::{HeaderMap, HeaderValue, Method, Uri};
use tradehabit_shared::signature::{self, Key, Signed, SIGNATURE, SIGNED_HEADERS};

/// Adds the signature for this request head to `headers`, after every
/// other header the gateway sets.
pub(crate) fn sign(key: &Key, method: &Method, uri: &Uri, headers: &mut HeaderMap) {
    let mut values = [None; SIGNED_HEADERS.len()];
    for (slot, name) in values.iter_mut().zip(SIGNED_HEADERS) {
        *slot = headers.get(name).map(HeaderValue::as_bytes);
    }
    let signed = Signed {
        method: method.as_str(),
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: values,
    };
    let value = signature::sign(key, signature::now_unix(), &signed);
    let value = HeaderValue::from_str(&value).expect("t=<digits>,v1=<hex> is header text");
    headers.insert(SIGNATURE, value);
}
