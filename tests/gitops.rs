//! The real-world regression suite: `fluxgate check` over public GitOps repositories vendored in
//! `tests/fixtures/gitops/` (each as its manifests are, `raw/`, and as `kubectl kustomize`
//! renders them, `rendered/`), compared with the expected findings committed in
//! `tests/golden/gitops/`. A change in any verdict, note or skipped file shows in review as a
//! diff of those files.
//!
//! The golden files hold what decides a verdict (each subject's findings by action and policy,
//! the notes by type, what was skipped and why), not the findings' wording, so that rewording a
//! message does not touch them. After a change that moves a verdict, check that the new finding
//! is a true one, then rewrite them:
//!
//!     FLUXGATE_UPDATE_GOLDEN=1 cargo test --test gitops
//!
//! Where each repository comes from, its commit and license: `tests/fixtures/gitops/*/README.md`;
//! how raw/ and rendered/ are made: `scripts/gitops-fixtures.py`. A `fluxgate.yaml` next to a
//! repository's README is a configuration the repository is also checked with (golden files
//! `<name>.<form>.configured.txt`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fluxgate::check;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::report::{Action, Report, SubjectType};

const FIXTURES: &str = "tests/fixtures/gitops";
const GOLDEN: &str = "tests/golden/gitops";
const UPDATE: &str = "FLUXGATE_UPDATE_GOLDEN";

/// The vendored repositories, by directory name.
fn repositories() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("tests/fixtures/gitops exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("raw").is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn check(path: &Path, config: Config) -> Report {
    let engine = Engine::new(config, None);
    check::check(&engine, &[path.to_path_buf()], &[], &mut std::io::empty())
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Deny => "deny",
        Action::Warn => "warn",
        Action::Audit => "audit",
        Action::Exempted => "exempted",
    }
}

/// What the golden file holds for one run: verdicts, notes and skips, paths relative to the
/// checked directory.
fn summary(report: &Report, root: &Path, title: &str) -> String {
    let prefix = format!("{}/", root.display());
    let local = |text: &str| text.replace(&prefix, "");
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "# {title}");
    let _ = writeln!(
        out,
        "# exit {}: {} objects, {} agent configurations, {} skipped, {} unreadable; {} denied, {} warned, {} audited, {} exempted",
        s.exit_code,
        s.objects,
        s.agent_configs,
        s.skipped,
        s.errors,
        s.denied,
        s.warned,
        s.audited,
        s.exempted
    );
    for subject in &report.results {
        if subject.findings.is_empty() && subject.notes.is_empty() {
            continue;
        }
        let name = match subject.subject_type {
            SubjectType::Object => subject.display_name(),
            SubjectType::GitlabAgentConfig => {
                format!("GitLab agent configuration {}", subject.name)
            }
        };
        let _ = writeln!(out, "\n{}:{} {}", local(&subject.file), subject.line, name);
        for note in &subject.notes {
            let _ = writeln!(out, "  note {:?}", note.note_type);
        }
        for finding in &subject.findings {
            let mut line = format!("  {} {}", action_word(finding.action), finding.policy);
            if let Some(entry) = &finding.entry {
                let _ = write!(line, " {entry}");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if !report.skipped.is_empty() {
        out.push('\n');
    }
    for skip in &report.skipped {
        let at = skip.line.map(|l| format!(":{l}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "skipped {}{at}: {}",
            local(&skip.file),
            local(&skip.reason)
        );
    }
    for error in &report.errors {
        // Where, and which policy found it malformed (the wording is the policy's).
        let at = error.line.map(|l| format!(":{l}")).unwrap_or_default();
        let by = error
            .message
            .strip_prefix('[')
            .and_then(|m| m.split_once(']'))
            .map(|(policy, _)| format!(" ({policy})"))
            .unwrap_or_default();
        let _ = writeln!(out, "unreadable {}{at}{by}", local(&error.file));
    }
    out
}

/// A line diff a reviewer can read: `-` expected, `+` found, two lines of context.
fn diff(expected: &str, found: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = found.lines().collect();
    // Longest common subsequence; golden files are a few hundred lines at most.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last = None;
    for (k, (mark, line)) in ops.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(k) <= 2);
        if !near {
            continue;
        }
        if last.is_some_and(|l| l + 1 != k) {
            out.push_str("  ...\n");
        }
        let _ = writeln!(out, "{mark} {line}");
        last = Some(k);
    }
    out
}

/// Compares a run with its golden file, or writes it when asked to.
fn compare(golden: &Path, found: &str, failures: &mut Vec<String>) {
    if std::env::var_os(UPDATE).is_some() {
        if let Some(dir) = golden.parent() {
            std::fs::create_dir_all(dir).expect("creates the golden directory");
        }
        std::fs::write(golden, found).expect("writes the golden file");
        return;
    }
    match std::fs::read_to_string(golden) {
        Ok(expected) if expected == found => {}
        Ok(expected) => failures.push(format!(
            "{} differs (- expected, + found):\n{}",
            golden.display(),
            diff(&expected, found)
        )),
        Err(e) => failures.push(format!("{}: {e}", golden.display())),
    }
}

#[test]
fn every_vendored_repository_checks_as_its_golden_file_says() {
    let mut failures = Vec::new();
    let repositories = repositories();
    assert!(
        repositories.len() >= 8,
        "the suite lost repositories: {repositories:?}"
    );
    for name in &repositories {
        let fixture = Path::new(FIXTURES).join(name);
        let configured = fixture.join("fluxgate.yaml");
        for form in ["raw", "rendered"] {
            let root = fixture.join(form);
            assert!(root.is_dir(), "{} is missing", root.display());
            let report = check(&root, Config::default());
            assert!(
                report.summary.objects > 0,
                "{}: nothing was checked",
                root.display()
            );
            let title = format!("fluxgate check {name}/{form} (built-in default configuration)");
            let found = summary(&report, &root, &title);
            compare(
                &Path::new(GOLDEN).join(format!("{name}.{form}.txt")),
                &found,
                &mut failures,
            );
            if configured.is_file() {
                let config =
                    Config::from_file(&configured).expect("the fixture's configuration is valid");
                let report = check(&root, config);
                let title = format!("fluxgate check --config {name}/fluxgate.yaml {name}/{form}");
                let found = summary(&report, &root, &title);
                compare(
                    &Path::new(GOLDEN).join(format!("{name}.{form}.configured.txt")),
                    &found,
                    &mut failures,
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended and every new finding is a true one, rewrite the golden files with `{UPDATE}=1 cargo test --test gitops` and commit them.",
        failures.join("\n\n")
    );
}

#[test]
fn no_golden_file_is_left_without_its_repository() {
    if std::env::var_os(UPDATE).is_some() {
        return;
    }
    let repositories = repositories();
    for entry in std::fs::read_dir(GOLDEN).expect("tests/golden/gitops exists") {
        let path: PathBuf = entry.expect("readable").path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
        let name = file.split('.').next().unwrap_or("");
        assert!(
            repositories.iter().any(|r| r == name),
            "{} has no repository in {FIXTURES}",
            path.display()
        );
    }
}

#[test]
fn every_vendored_repository_says_where_it_comes_from() {
    for name in repositories() {
        let fixture = Path::new(FIXTURES).join(&name);
        let readme = std::fs::read_to_string(fixture.join("README.md"))
            .unwrap_or_else(|e| panic!("{name}/README.md: {e}"));
        let written_here = readme.contains("Written for fluxgate");
        if written_here {
            assert!(
                readme.contains("License: Apache-2.0, fluxgate's own"),
                "{name}/README.md"
            );
            continue;
        }
        for field in [
            "- Source: https://github.com/",
            "- Commit: `",
            "- License: ",
        ] {
            assert!(readme.contains(field), "{name}/README.md lacks {field:?}");
        }
        let license = readme
            .lines()
            .find_map(|l| l.strip_prefix("- License: "))
            .unwrap_or("");
        assert!(
            license.starts_with("Apache-2.0") || license.starts_with("MIT"),
            "{name}: only Apache-2.0 or MIT repositories may be vendored, not {license}"
        );
        assert!(
            fixture.join("LICENSE").is_file(),
            "{name}: the repository's LICENSE is not next to its manifests"
        );
    }
}

#[test]
fn the_diff_shows_what_changed_with_context() {
    let expected = "a\nb\nc\nd\ne\nf\ng\n";
    let found = "a\nb\nc\nD\ne\nf\ng\nh\n";
    let shown = diff(expected, found);
    assert!(shown.contains("- d\n+ D\n"), "{shown}");
    assert!(shown.contains("+ h\n"), "{shown}");
    assert!(!shown.contains("  a\n"), "context is two lines: {shown}");
}
