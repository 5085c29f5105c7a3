//! Any command line and environment: `kubelet::find_flag` answers (found, undecided or
//! absent) and never panics, whatever the `$(VAR)` references, quoting, `${...}`, `$(...)`,
//! loops and nesting of the script text; and a flag written out plainly as an argument is
//! always found. Input: NUL-separated fields; the first is `command` (split on 0x01), the
//! second `args`, the rest `NAME=value` env entries (`NAME@` makes a ConfigMap reference).
#![no_main]

use std::borrow::Cow;

use fluxgate::kubelet::expansion::{EnvVar, Environment};
use fluxgate::kubelet::{FlagSearch, find_flag};
use libfuzzer_sys::fuzz_target;

const FLAG: &str = "--kas-address";

/// A closure cannot tie its result's lifetime to its argument's (`Cow<'_, str>` in a closure's
/// return type is a fresh lifetime), so the split is a function.
fn split(s: Option<&str>) -> Vec<Cow<'_, str>> {
    s.map(|s| s.split('\u{1}').map(Cow::Borrowed).collect())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.split('\0');
    let command = split(fields.next());
    let mut args = split(fields.next());
    let env: Vec<serde_json::Value> = fields
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) => serde_json::json!({"name": name, "value": value}),
            None => serde_json::json!({"name": entry.trim_end_matches('@'),
                "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}),
        })
        .collect();
    let env_json = serde_json::to_string(&env).unwrap_or_default();
    let env: Vec<EnvVar<'_>> = serde_json::from_str(&env_json).unwrap_or_default();
    let environment = |budget: &mut _| Environment::new(&env, &[], "ns", budget);
    let _ = find_flag(&command, &args, environment, FLAG);

    // The flag as a plain argument of its own is found, whatever surrounds it.
    args.push(Cow::Borrowed("--kas-address=wss://kas"));
    let environment = |budget: &mut _| Environment::new(&env, &[], "ns", budget);
    assert!(matches!(
        find_flag(&command, &args, environment, FLAG),
        FlagSearch::Found(_)
    ));
});
