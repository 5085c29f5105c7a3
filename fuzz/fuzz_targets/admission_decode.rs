//! Any body the webhook may receive: `admission::decode` answers or refuses, never panics,
//! and what it decodes can be answered.
#![no_main]

use fluxgate::admission;
use fluxgate::verdict::Verdict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(request) = admission::decode(body) {
        let answer = admission::encode(&request.uid, &Verdict::allow());
        assert!(serde_json::from_slice::<serde_json::Value>(&answer).is_ok());
        let _ = request.namespace();
        let _ = request.name();
    }
});
