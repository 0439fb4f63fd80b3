//! Every template kbot renders, in one folder, handed to the crates that render them.
//! Templates are minijinja (Jinja2) source; the data they see is documented in each file.

/// The Markdown report of one check (`kbot check --report`, `report.md` of a job).
pub const REPORT_MD: &str = include_str!("report.md.j2");
/// The plain-text mail reply to a series (0-day style).
pub const MAIL_REPORT: &str = include_str!("mail-report.txt.j2");
/// The comment on a GitHub pull request whose commits have a regression (Markdown).
pub const GITHUB_COMMENT: &str = include_str!("github-comment.md.j2");
/// The dashboard's pages: `(name, source)`, the base layout first.
pub const WEB: &[(&str, &str)] = &[
    ("base.html.j2", include_str!("web-base.html.j2")),
    ("index.html.j2", include_str!("web-index.html.j2")),
    ("run.html.j2", include_str!("web-run.html.j2")),
];

/// Unicode's format characters (general category Cf, Unicode 15.1: bidi embeddings, overrides
/// and isolates such as U+202E and U+2066..U+2069, zero-width spaces and joiners, the BOM,
/// tag characters, ...) and the line and paragraph separators U+2028/U+2029: characters that
/// are invisible or reorder what is shown, so a subject or name from a series holding them
/// reads differently from what it is ("Trojan Source").
pub fn is_invisible(c: char) -> bool {
    const CF: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x2028, 0x2029),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = c as u32;
    CF.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// `s` with every control character but newline and tab, and every [`is_invisible`]
/// character, written as `<U+XXXX>`: what a report shows of text from a series.
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() && c != '\n' && c != '\t') || is_invisible(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` as one Markdown table cell: `|` escaped and line breaks as spaces, so text from a
/// series (a subject, a trailer, git's reason naming a path) cannot end or add a cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A template environment for text templates (report, mail, comment): blocks trim their own
/// line, and the text keeps its last newline; with the `short` filter (first 12 characters,
/// how kbot names commits), the `visible` filter ([`visible`]: control and invisible
/// characters as `<U+XXXX>`) and the named templates added.
pub fn text_environment(
    templates: &[(&'static str, &'static str)],
) -> Result<minijinja::Environment<'static>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    env.add_filter("short", |s: String| s.chars().take(12).collect::<String>());
    env.add_filter("visible", |s: String| visible(&s));
    env.add_filter("cell", |s: String| cell(&s));
    for (name, src) in templates {
        env.add_template(name, src)?;
    }
    Ok(env)
}

/// The dashboard's environment (HTML: autoescaped by the `.html.j2` names).
pub fn web_environment() -> Result<minijinja::Environment<'static>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    for (name, src) in WEB {
        env.add_template(name, src)?;
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        super::text_environment(&[
            ("report.md", super::REPORT_MD),
            ("mail", super::MAIL_REPORT),
            ("comment", super::GITHUB_COMMENT),
        ])
        .unwrap();
        super::web_environment().unwrap();
    }

    #[test]
    fn a_cell_cannot_end_or_add_cells() {
        assert_eq!(super::cell("fs/a|b.c: x\ny"), "fs/a\\|b.c: x y");
        let env = super::text_environment(&[("t", "| {{ v | cell }} |")]).unwrap();
        let out = env.get_template("t").unwrap().render(minijinja::context! { v => "a | b" }).unwrap();
        assert_eq!(out, "| a \\| b |");
    }

    #[test]
    fn visible_shows_what_would_hide_or_reorder_text() {
        use super::{is_invisible, visible};
        for c in [
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{E0041}',
            '\u{2028}',
        ] {
            assert!(is_invisible(c), "{:04X}", c as u32);
        }
        for c in ['a', 'é', ' ', '\u{00A0}', '—', '中', '\u{1F600}'] {
            assert!(!is_invisible(c), "{:04X}", c as u32);
        }
        assert_eq!(
            visible("fix \u{202E}gnp.exe\u{202C}\n\tok\x1b[0m\r"),
            "fix <U+202E>gnp.exe<U+202C>\n\tok<U+001B>[0m<U+000D>"
        );
        let env = super::text_environment(&[("t", "{% filter visible %}{{ s }}\n{% endfilter %}")]).unwrap();
        let out = env.get_template("t").unwrap().render(minijinja::context! { s => "a\u{2066}b" }).unwrap();
        assert_eq!(out, "a<U+2066>b\n");
    }
}
