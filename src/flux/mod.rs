//! Typed views of Flux objects: only the fields policies read.
