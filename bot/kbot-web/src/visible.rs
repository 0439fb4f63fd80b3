//! Characters a page must not pass through invisibly: control characters (Unicode category
//! Cc, but line feed and tab) and format characters (category Cf: the bidi overrides and
//! isolates U+202A–202E and U+2066–2069, zero-width characters, the byte order mark, tags,
//! ...). A subject with U+202E would otherwise reverse the text after it in the page and its
//! title. Every value a dashboard template prints goes through [`visible`] (the environment's
//! formatter), so no template can forget it; the JSON routes give the data as it is.

/// A character shown as a visible stand-in: Cc but `\n` and `\t`, and what
/// [`kbot_templates::is_invisible`] names (Cf and the line and paragraph separators).
pub fn is_hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || kbot_templates::is_invisible(c)
}

/// `s` with every hidden character made visible: C0 controls and DEL as their Control
/// Pictures (U+2400–2421: `␛` for ESC), the others as `<U+XXXX>`.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_hidden) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            c if !is_hidden(c) => out.push(c),
            '\u{0}'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}')),
            '\u{7f}' => out.push('\u{2421}'),
            c => out.push_str(&format!("<U+{:04X}>", c as u32)),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_format_and_control_characters_become_visible() {
        assert_eq!(visible("plain [PATCH] ünïcode\ttab\nline"), "plain [PATCH] ünïcode\ttab\nline");
        assert_eq!(visible("a\u{202E}gnp.exe"), "a<U+202E>gnp.exe");
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200B}', '\u{FEFF}', '\u{E0041}', '\u{AD}'] {
            assert!(is_hidden(c), "{c:?} is Cf");
            assert!(!visible(&format!("x{c}y")).contains(c), "{c:?}");
        }
        assert_eq!(visible("\u{1b}[31mred\r"), "\u{241b}[31mred\u{240d}");
        assert_eq!(visible("\u{85}\u{7f}\u{2028}"), "<U+0085>\u{2421}<U+2028>");
        assert!(!is_hidden('a') && !is_hidden('\u{2065}') && !is_hidden('\u{E0080}'));
    }
}
