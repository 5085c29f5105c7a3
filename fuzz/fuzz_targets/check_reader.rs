//! `fluxgate check` on any standard input: the YAML and JSON reader, `List` expansion, the
//! agent configuration lint, the policies, and every report format.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::report::Format;
use libfuzzer_sys::fuzz_target;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(Config::default(), None));

fuzz_target!(|input: &[u8]| {
    let mut stdin = input;
    let report = fluxgate::check::check(&ENGINE, &[PathBuf::from("-")], &[], &mut stdin);
    for format in [
        Format::Text,
        Format::Json,
        Format::Junit,
        Format::Codequality,
    ] {
        let mut out = Vec::new();
        fluxgate::report::write(&report, format, false, &mut out).expect("writing to memory");
    }
});
