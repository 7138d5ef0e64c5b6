//! The reader over a whole stream cut into pieces, for the fuzz target and
//! the in-suite fuzz smoke test (`fuzzing` in `lib.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{BodyFramingRefused, Bounds, Framing, Verdicts};

/// What [`follow`] found: heads read, the first refused request (by number,
/// with its detail), the refused body's detail, where the reader stopped
/// following, and every byte hyper was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Request heads hyper is shown (each becomes a request).
    pub heads: u64,
    /// The first request whose head is refused, and the refusal's detail.
    pub refused_head: Option<(u64, &'static str)>,
    /// The detail of a refused chunked body.
    pub refused_body: Option<&'static str>,
    /// The heads read when the reader stopped following the connection, if
    /// it did: requests after them are refused.
    pub unfollowed_after: Option<u64>,
    /// Every byte hyper is shown, in order.
    pub shown: Vec<u8>,
}

/// Reads `stream` cut into pieces at `cuts` (offsets, any order, out of
/// range ignored) with hyper's default bounds. The answer must not depend
/// on the cuts (the fuzz target checks it).
pub(crate) fn follow(stream: &[u8], cuts: &[usize]) -> Followed {
    let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let found = Arc::new(Verdicts::default());
    let bounds = Bounds {
        head_bytes: 16 * 1024,
        fields: 100,
        trailer_bytes: 8 * 1024,
    };
    let mut framing = Framing::new(bounds, Arc::clone(&found));
    let mut shown = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([stream.len()]) {
        let piece = &stream[start..cut];
        let seen = framing.read(piece);
        shown.extend_from_slice(&seen.released);
        shown.extend_from_slice(&piece[..seen.passed]);
        shown.extend_from_slice(&seen.injected);
        start = cut;
    }
    Followed {
        heads: framing.heads,
        refused_head: found.first().map(|(request, why)| (request, why.detail())),
        refused_body: framing.body_refusal().map(BodyFramingRefused::detail),
        unfollowed_after: found
            .is_passing()
            .then(|| found.followed_heads.load(Ordering::Relaxed)),
        shown,
    }
}
