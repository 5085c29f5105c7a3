//! The `fluxgate` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    fluxgate::cli::main()
}
