//! Fuzzes the `powermetrics -f plist` stream splitter (`PlistSplitter`) and the reading of
//! every document it completes (`parse_document`).
//!
//! Input: byte 0 gives how many of the next bytes are read-chunk sizes (`1 + byte0 % 8`);
//! the rest is the stream. The stream is pushed in chunks of those sizes, used in turn
//! (0 pushes an empty chunk), so every way of cutting the stream into reads is reachable.
//!
//! Panics when one of these fails:
//! - every document ends with `</plist>`, holds no earlier `</plist>`, and does not start
//!   with NUL or ASCII whitespace;
//! - the documents and `pending()` never hold more bytes than were pushed; exactly, the
//!   stream is: separators, document, separators, document, ..., separators, `pending()`;
//! - `pending()` holds no `</plist>`, and an empty push completes nothing;
//! - chunking changes nothing: the documents and `pending()` equal those of one push of the
//!   whole stream, and again after `clear()` on the chunked splitter;
//! - `parse_document` does not panic on any document; an `Ok` reading has `elapsed_ns >= 1`,
//!   at least one energy, and every energy `None` or finite and non-negative.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracing_energy::power::plist_stream::{parse_document, PlistSplitter};

const END_TAG: &[u8; 8] = b"</plist>";

fn is_separator(b: u8) -> bool {
    b == 0 || b.is_ascii_whitespace()
}

/// Where `</plist>` first occurs. Compares 8-byte words: a `memcmp` per position would be
/// intercepted by libFuzzer and slow every run down several times.
fn find_end_tag(bytes: &[u8]) -> Option<usize> {
    let tag = u64::from_ne_bytes(*END_TAG);
    bytes
        .windows(8)
        .position(|w| u64::from_ne_bytes(w.try_into().unwrap()) == tag)
}

fn check_document(doc: &[u8]) {
    assert!(
        doc.ends_with(END_TAG),
        "document does not end with </plist>"
    );
    assert_eq!(
        find_end_tag(doc),
        Some(doc.len() - END_TAG.len()),
        "document holds </plist> before its end"
    );
    assert!(!is_separator(doc[0]), "document starts with a separator");
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at((1 + head as usize % 8).min(rest.len()));

    let mut whole = PlistSplitter::new();
    let expected = whole.push(stream);

    let all_zero = sizes.iter().all(|&s| s == 0);
    let mut chunked = PlistSplitter::new();
    let mut docs: Vec<Vec<u8>> = Vec::new();
    let (mut pos, mut turn, mut doc_bytes) = (0, 0, 0);
    while pos < stream.len() {
        let size = if all_zero {
            stream.len()
        } else {
            sizes[turn % sizes.len()] as usize
        };
        turn += 1;
        let end = (pos + size).min(stream.len());
        for doc in chunked.push(&stream[pos..end]) {
            check_document(&doc);
            doc_bytes += doc.len();
            docs.push(doc);
        }
        pos = end;
        let out = doc_bytes + chunked.pending().len();
        assert!(out <= pos, "{out} bytes out of {pos} pushed");
    }
    assert!(
        chunked.push(&[]).is_empty(),
        "an empty push completed a document"
    );
    assert!(
        find_end_tag(chunked.pending()).is_none(),
        "pending holds </plist>"
    );

    // The stream is separators and documents, in order, then the pending bytes.
    let mut at = 0;
    for doc in docs.iter().map(Vec::as_slice).chain([chunked.pending()]) {
        while at < stream.len() && is_separator(stream[at]) {
            at += 1;
        }
        assert!(
            stream[at..].starts_with(doc),
            "output differs from the stream at byte {at}"
        );
        at += doc.len();
    }
    assert_eq!(
        at,
        stream.len(),
        "stream bytes after the pending ones were lost"
    );

    assert!(docs == expected, "chunking changed the documents");
    assert!(
        chunked.pending() == whole.pending(),
        "chunking changed the pending bytes"
    );
    chunked.clear();
    assert!(chunked.pending().is_empty());
    assert!(
        chunked.push(stream) == expected,
        "a cleared splitter differs from a new one"
    );

    for doc in &docs {
        if let Ok(reading) = parse_document(doc) {
            assert!(reading.elapsed_ns >= 1, "elapsed_ns is 0");
            let e = reading.energy;
            assert!(e.total().is_some(), "a reading without energies: {e:?}");
            for v in [e.cpu, e.gpu, e.ane, e.dram].into_iter().flatten() {
                assert!(v.is_finite() && v >= 0.0, "energy {v} in {e:?}");
            }
        }
    }
});
