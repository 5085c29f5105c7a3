//! JUnit XML, as GitLab reads it for `artifacts:reports:junit`: one `<testsuite>` per file,
//! one `<testcase>` per policy that judged an object ("signed-oci-sources OCIRepository
//! flux-system/app"). A denial is a `<failure>`; warnings, audit findings and exemptions are
//! passed tests with the text in `<system-out>`; an unreadable input is an `<error>`.

use std::io::{self, Write};

use super::{Action, Report, Subject, xml};
use crate::finding::PolicyId;

struct Case {
    name: String,
    file: String,
    line: Option<usize>,
    failure: Option<(String, String)>,
    error: Option<String>,
    output: String,
}

struct Suite {
    name: String,
    cases: Vec<Case>,
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Deny => "deny",
        Action::Warn => "warn",
        Action::Audit => "audit",
        Action::Exempted => "exempted",
    }
}

fn cases_of(subject: &Subject) -> Vec<Case> {
    subject
        .evaluated
        .iter()
        .map(|policy: &PolicyId| {
            let findings: Vec<_> = subject
                .findings
                .iter()
                .filter(|f| f.policy == *policy)
                .collect();
            let denials: Vec<&str> = findings
                .iter()
                .filter(|f| f.action == Action::Deny)
                .map(|f| f.message.as_str())
                .collect();
            let failure = (!denials.is_empty())
                .then(|| (first_line(denials[0]).to_string(), denials.join("\n\n")));
            let mut output = String::new();
            for f in findings.iter().filter(|f| f.action != Action::Deny) {
                if !output.is_empty() {
                    output.push_str("\n\n");
                }
                output.push_str(action_word(f.action));
                if let Some(exemption) = &f.exemption {
                    output.push_str(&format!(" by {exemption}"));
                }
                output.push_str(": ");
                output.push_str(&f.message);
            }
            let line = findings.first().map(|f| f.line).unwrap_or(subject.line);
            Case {
                name: format!("{policy} {}", subject.display_name()),
                file: subject.file.clone(),
                line: Some(line),
                failure,
                error: None,
                output,
            }
        })
        .collect()
}

fn suites(report: &Report) -> Vec<Suite> {
    let mut suites: Vec<Suite> = Vec::new();
    let suite_for = |file: &str, suites: &mut Vec<Suite>| -> usize {
        match suites.iter().position(|s| s.name == file) {
            Some(i) => i,
            None => {
                suites.push(Suite {
                    name: file.to_string(),
                    cases: Vec::new(),
                });
                suites.len() - 1
            }
        }
    };
    for subject in &report.results {
        let cases = cases_of(subject);
        if cases.is_empty() {
            continue;
        }
        let i = suite_for(&subject.file, &mut suites);
        suites[i].cases.extend(cases);
    }
    for error in &report.errors {
        let i = suite_for(&error.file, &mut suites);
        suites[i].cases.push(Case {
            name: format!("read {}", error.file),
            file: error.file.clone(),
            line: error.line,
            failure: None,
            error: Some(error.display()),
            output: String::new(),
        });
    }
    suites
}

/// Writes the report as JUnit XML.
pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let suites = suites(report);
    let count = |f: &dyn Fn(&Case) -> bool| -> usize {
        suites
            .iter()
            .flat_map(|s| &s.cases)
            .filter(|c| f(c))
            .count()
    };
    let mut xml_out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml_out.push_str(&format!(
        "<testsuites name=\"fluxgate check\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
        count(&|_| true),
        count(&|c| c.failure.is_some()),
        count(&|c| c.error.is_some()),
    ));
    for suite in &suites {
        xml_out.push_str("  <testsuite name=\"");
        xml::attr(&suite.name, &mut xml_out);
        xml_out.push_str(&format!(
            "\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"0\">\n",
            suite.cases.len(),
            suite.cases.iter().filter(|c| c.failure.is_some()).count(),
            suite.cases.iter().filter(|c| c.error.is_some()).count(),
        ));
        for case in &suite.cases {
            xml_out.push_str("    <testcase name=\"");
            xml::attr(&case.name, &mut xml_out);
            xml_out.push_str("\" classname=\"");
            xml::attr(&suite.name, &mut xml_out);
            xml_out.push_str("\" file=\"");
            xml::attr(&case.file, &mut xml_out);
            xml_out.push('"');
            if let Some(line) = case.line {
                xml_out.push_str(&format!(" line=\"{line}\""));
            }
            xml_out.push_str(" time=\"0\"");
            if case.failure.is_none() && case.error.is_none() && case.output.is_empty() {
                xml_out.push_str("/>\n");
                continue;
            }
            xml_out.push_str(">\n");
            if let Some((message, body)) = &case.failure {
                xml_out.push_str("      <failure type=\"policy violation\" message=\"");
                xml::attr(message, &mut xml_out);
                xml_out.push_str("\">");
                xml::text(body, &mut xml_out);
                xml_out.push_str("</failure>\n");
            }
            if let Some(message) = &case.error {
                xml_out.push_str("      <error type=\"unreadable input\" message=\"");
                xml::attr(first_line(message), &mut xml_out);
                xml_out.push_str("\">");
                xml::text(message, &mut xml_out);
                xml_out.push_str("</error>\n");
            }
            if !case.output.is_empty() {
                xml_out.push_str("      <system-out>");
                xml::text(&case.output, &mut xml_out);
                xml_out.push_str("</system-out>\n");
            }
            xml_out.push_str("    </testcase>\n");
        }
        xml_out.push_str("  </testsuite>\n");
    }
    xml_out.push_str("</testsuites>\n");
    out.write_all(xml_out.as_bytes())
}
