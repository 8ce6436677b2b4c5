//! Text into the HTML pages flowgate writes (the admin dashboard, the autopilot's page,
//! the exercise report): one escaper, so that no page trusts a region name, a note or a
//! reason more than another.

/// Escapes text for HTML content and for attribute values quoted with `"` or `'`.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_the_five_characters_that_matter_and_nothing_else() {
        assert_eq!(
            esc(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(esc("us-east-1 · évacué"), "us-east-1 · évacué");
        assert_eq!(esc(""), "");
    }
}
