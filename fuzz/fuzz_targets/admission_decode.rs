//! Any body the webhook may receive: `admission::decode` answers or refuses, never panics,
//! what it decodes can be answered, and what it reads from the index without serde is what
//! serde reads.
#![no_main]

use fluxgate::admission;
use fluxgate::engine::verdict::Verdict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    assert!(admission::direct_read_agrees(body));
    if let Ok(request) = admission::decode(body) {
        let answer = fluxgate::engine::verdict::encode(&request.uid, &Verdict::allow());
        assert!(serde_json::from_slice::<serde_json::Value>(&answer).is_ok());
        let _ = request.namespace();
        let _ = request.name();
    }
});
