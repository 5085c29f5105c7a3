//! PLACEHOLDER: reflectors feeding the MemoryView; being written.
