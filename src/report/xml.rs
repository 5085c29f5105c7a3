//! Just enough XML writing for JUnit reports: escaping of text and attribute values.

/// Characters XML 1.0 cannot carry at all, not even as character references.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes element content.
pub fn text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            // `]]>` must not appear in content; escaping every `>` is simplest.
            '>' => out.push_str("&gt;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// Escapes an attribute value written between double quotes. Line breaks and tabs become
/// references, as a parser would otherwise normalise them to spaces.
pub fn attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_forbidden_characters_are_escaped() {
        let mut out = String::new();
        text("a<b & c>d ]]> \u{1b}[31m", &mut out);
        assert_eq!(out, "a&lt;b &amp; c&gt;d ]]&gt; \u{FFFD}[31m");
        let mut out = String::new();
        attr("say \"hi\" & 'bye'\nnext\u{0}", &mut out);
        assert_eq!(
            out,
            "say &quot;hi&quot; &amp; &apos;bye&apos;&#10;next\u{FFFD}"
        );
    }
}
