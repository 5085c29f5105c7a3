//! The report for people: findings and notes grouped by file, then a one-line summary.
//! Objects with neither are not listed. Colour is the caller's decision (a terminal, and
//! `NO_COLOR` unset).

use std::io::{self, Write};

use super::{Action, Report, Subject, SubjectType};

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn action(&self, action: Action) -> String {
        let (word, code) = match action {
            Action::Deny => ("DENY  ", "1;31"),
            Action::Warn => ("WARN  ", "33"),
            Action::Audit => ("AUDIT ", "36"),
            Action::Exempted => ("EXEMPT", "2"),
        };
        self.paint(code, word)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_subject(subject: &Subject, style: &Style, out: &mut String) {
    let item = subject
        .item
        .map(|i| format!(" (items[{i}])"))
        .unwrap_or_default();
    out.push_str(&format!(
        "  line {}{item}: {}\n",
        subject.line,
        subject.display_name()
    ));
    for note in &subject.notes {
        let mut lines = note.message.lines();
        out.push_str(&format!(
            "    {} {}\n",
            style.paint("2", "NOTE  "),
            lines.next().unwrap_or("")
        ));
        for line in lines {
            out.push_str(&format!("           {line}\n"));
        }
    }
    for finding in &subject.findings {
        let mut head = format!("[{}]", finding.policy);
        if finding.entry.is_some() && finding.line != subject.line {
            head.push_str(&format!(" line {}:", finding.line));
        }
        if let Some(exemption) = &finding.exemption {
            head.push_str(&format!(" (exemption {exemption})"));
        }
        let mut lines = finding.message.lines();
        out.push_str(&format!(
            "    {} {head} {}\n",
            style.action(finding.action),
            lines.next().unwrap_or("")
        ));
        for line in lines {
            out.push_str(&format!("           {line}\n"));
        }
    }
}

/// Writes the report as text.
pub fn write(report: &Report, color: bool, out: &mut dyn Write) -> io::Result<()> {
    let style = Style { color };
    let mut text = String::new();
    let mut current_file: Option<&str> = None;
    let listed =
        |s: &&Subject| !s.findings.is_empty() || s.notes.iter().any(|n| !n.note_type.is_context());
    for subject in report.results.iter().filter(listed) {
        if current_file != Some(subject.file.as_str()) {
            if current_file.is_some() {
                text.push('\n');
            }
            text.push_str(&style.paint("1", &subject.file));
            text.push('\n');
            current_file = Some(&subject.file);
        }
        write_subject(subject, &style, &mut text);
    }
    if current_file.is_some() {
        text.push('\n');
    }
    let s = &report.summary;
    let configs = report
        .results
        .iter()
        .filter(|r| r.subject_type == SubjectType::GitlabAgentConfig)
        .count();
    let mut checked = plural(s.objects, "object", "objects");
    if configs > 0 {
        checked.push_str(&format!(
            " and {}",
            plural(configs, "agent configuration", "agent configurations")
        ));
    }
    let verdict = match s.exit_code {
        0 => style.paint("1;32", "PASS"),
        1 => style.paint("1;31", "FAIL"),
        _ => style.paint("1;31", "ERROR"),
    };
    text.push_str(&format!(
        "{verdict}: checked {checked} in {}: {} denied, {} warned, {} audited, {} exempted; {} skipped, {} unreadable\n",
        plural(s.files, "file", "files"),
        s.denied,
        s.warned,
        s.audited,
        s.exempted,
        s.skipped,
        s.errors,
    ));
    out.write_all(text.as_bytes())
}
