//! What a container runs, as the kubelet starts it: the command line after the kubelet's
//! `$(VAR)` expansion from the container's environment ([`expansion`]), and what a shell
//! entrypoint's script passes to the programs it starts ([`command_line`]).
//!
//! Policies that recognise a program by its flags (agentk by `--kas-address`) read the flags
//! through [`command_line::find_flag`], so that `args: ["$(FLAG)=wss://..."]` with
//! `FLAG=--kas-address` in `env`, or `sh -c "exec agentk --kas-address=..."`, mean what the
//! kubelet and the shell make of them. Text fluxgate cannot read (a ConfigMap or Secret key,
//! an annotation, `envFrom`) is kept as an unknown piece with its source, so that a flag that
//! may come from it is reported as undecided rather than as absent.

pub mod command_line;
pub mod expansion;

pub use command_line::{FlagPlace, FlagSearch, find_flag};
pub use expansion::{Class, EnvFromSource, EnvVar, Environment, Part, Unknown, Value};
