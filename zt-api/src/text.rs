//! Messages that must stay on one line. Errors quote what users wrote — an apiVersion, a
//! kind, a YAML value, a command name — and a quoted string may hold a line break (an escape
//! in a YAML or JSON string). Written as it is, one error would span several lines, and the
//! line-oriented protocol, the agent's log and `ztctl`'s output promise one sentence each.

use std::borrow::Cow;

/// `s` with every line break written as an escape (`\n`, `\r`, `\u{85}`, `\u{2028}`,
/// `\u{2029}`), so a message quoting user input stays one line.
pub fn one_line(s: &str) -> Cow<'_, str> {
    const BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];
    if !s.contains(BREAKS) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if BREAKS.contains(&c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_are_escaped_and_other_text_is_untouched() {
        assert_eq!(one_line("zt/v1"), "zt/v1");
        assert!(matches!(one_line("plain"), Cow::Borrowed(_)));
        assert_eq!(one_line("a\nb\r\nc"), "a\\nb\\r\\nc");
        assert_eq!(one_line("x\u{2028}y"), "x\\u{2028}y");
        assert_eq!(one_line("é ü"), "é ü");
    }
}
