//! Any text: the fast YAML path of `fluxgate check` (`check::fast_yaml`) reads it exactly as
//! serde_yaml_ng does, or leaves it to serde_yaml_ng; it never reads a text serde_yaml_ng
//! refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Some(json) = fluxgate::check::fast_yaml::to_json(text) else {
        return;
    };
    let fast: Value = match serde_json::from_str(&json) {
        Ok(value) => value,
        Err(e) => panic!("the fast path writes {json:?} for {text:?}, which is not JSON: {e}"),
    };
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(slow) => assert_eq!(fast, slow, "the fast path reads {text:?} differently"),
        Err(e) => panic!("the fast path reads {text:?} as {fast}; serde_yaml_ng: {e}"),
    }
});
