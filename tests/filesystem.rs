//! `fluxgate serve` writes nothing: the Deployment runs it with a read-only root file system
//! and read-only mounts for its configuration and certificate. Only `fluxgate certs` and
//! `serve --demo` (which generates ./certs) write files.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Every file under `dir` with its length and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("readable dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                pending.push(entry.path());
            }
            files.insert(
                entry.path().display().to_string(),
                (meta.len(), meta.modified().expect("mtime")),
            );
        }
    }
    files
}

#[test]
fn serve_writes_nothing_outside_or_inside_its_config_and_certificate_paths() {
    let mounted = common::TempDir::new("fs-mounted");
    let work = common::TempDir::new("fs-cwd");
    let tmp = common::TempDir::new("fs-tmp");
    let home = common::TempDir::new("fs-home");
    common::write_certs(&mounted.0);
    std::fs::write(
        mounted.0.join("config.yaml"),
        "policies:\n  single-agent: {mode: warn}\n",
    )
    .expect("config");
    let before = [&mounted, &work, &tmp, &home].map(|d| snapshot(&d.0));

    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(["serve", "--no-cluster", "--log-format", "json"])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--reload-interval-ms", "50"])
        .arg("--tls-cert")
        .arg(mounted.0.join("tls.crt"))
        .arg("--tls-key")
        .arg(mounted.0.join("tls.key"))
        .arg("--config")
        .arg(mounted.0.join("config.yaml"))
        .current_dir(&work.0)
        .env("TMPDIR", &tmp.0)
        .env("HOME", &home.0)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let mut serving = false;
    while started.elapsed() < Duration::from_secs(20) {
        match lines.next() {
            Some(Ok(line)) if line.contains("fluxgate is serving") => {
                serving = true;
                break;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    assert!(serving, "fluxgate starts serving");
    // Several reload polls of the configuration and certificate files.
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(child.wait().expect("exits").success());

    let after = [&mounted, &work, &tmp, &home].map(|d| snapshot(&d.0));
    for (name, (b, a)) in ["mounted", "cwd", "TMPDIR", "HOME"]
        .iter()
        .zip(before.iter().zip(after.iter()))
    {
        assert_eq!(b, a, "fluxgate serve changed files in its {name} directory");
    }
}
