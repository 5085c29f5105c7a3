//! The `fluxgate` binary as users script against it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn fluxgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fluxgate"))
}

#[test]
fn config_default_prints_a_file_that_validates() {
    let out = fluxgate()
        .args(["config", "default"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("mode: enforce"));
    let dir = common::TempDir::new("cli-config");
    let path = dir.0.join("fluxgate.yaml");
    std::fs::write(&path, &text).expect("write");
    let out = fluxgate()
        .args(["config", "validate"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_config_is_refused_at_start_with_the_key_and_line() {
    let dir = common::TempDir::new("cli-bad-config");
    common::write_certs(&dir.0);
    let config = dir.0.join("fluxgate.yaml");
    std::fs::write(
        &config,
        "mode: enforce\npolicies:\n  single-agent:\n    mode: loud\n",
    )
    .expect("write");
    let out = fluxgate()
        .args([
            "serve",
            "--no-cluster",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(dir.0.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.0.join("tls.key"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fluxgate.yaml:4:"), "{stderr}");
    assert!(stderr.contains("policies.single-agent.mode"), "{stderr}");
}

#[test]
fn certs_writes_a_pair_and_prints_the_ca_bundle() {
    let dir = common::TempDir::new("cli-certs");
    let out = fluxgate()
        .args([
            "certs",
            "--dns",
            "fluxgate.fluxgate-system.svc",
            "--ip",
            "10.0.0.1",
            "--out",
        ])
        .arg(&dir.0)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = String::from_utf8(out.stdout).expect("utf-8");
    use base64::Engine as _;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .expect("base64");
    assert_eq!(pem, std::fs::read(dir.0.join("ca.crt")).expect("ca.crt"));
    for file in ["ca.key", "tls.crt", "tls.key"] {
        assert!(dir.0.join(file).is_file(), "{file}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.0.join("tls.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
    }
    let out = fluxgate()
        .args(["certs", "--out"])
        .arg(&dir.0)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "no names is bad usage");
}

#[cfg(unix)]
#[test]
fn serve_exits_cleanly_on_sigterm() {
    let dir = common::TempDir::new("cli-serve");
    common::write_certs(&dir.0);
    let mut child = fluxgate()
        .args([
            "serve",
            "--no-cluster",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--tls-cert")
        .arg(dir.0.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.0.join("tls.key"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let mut serving = false;
    while started.elapsed() < Duration::from_secs(20) {
        match lines.next() {
            Some(Ok(line)) => {
                let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
                if entry["message"] == "fluxgate is serving" {
                    serving = true;
                    break;
                }
            }
            _ => break,
        }
    }
    assert!(serving, "fluxgate logs that it is serving");
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
}
