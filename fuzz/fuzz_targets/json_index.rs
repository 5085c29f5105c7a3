//! Any text: `json_view::TextIndex` takes it for JSON exactly when serde_json does, and a view
//! read through the index reads what serde_json reads.
#![no_main]

use std::borrow::Cow;
use std::sync::Arc;

use fluxgate::json_view::{TextIndex, from_indexed};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// Bound on nesting for both: serde_json stops at 128 levels, the index here at 100.
const DEPTH: usize = 100;

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct View<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    items: Vec<View<'a>>,
    #[serde(default)]
    flag: Option<bool>,
    #[serde(default)]
    count: Option<i64>,
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if bytes.iter().filter(|&&b| b == b'[' || b == b'{').count() > DEPTH {
        return;
    }
    let index = TextIndex::of(text, DEPTH);
    let json = serde_json::from_str::<IgnoredAny>(text).is_ok();
    assert_eq!(index.is_some(), json, "{text:?}");
    if let Some(index) = index {
        let index = Arc::new(index);
        let read = from_indexed::<View<'_>>(&index).map(|v| format!("{v:?}"));
        let parsed = serde_json::from_str::<View<'_>>(text).map(|v| format!("{v:?}"));
        match (&read, &parsed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{text:?}: indexed {read:?}, serde_json {parsed:?}"),
        }
    }
});
