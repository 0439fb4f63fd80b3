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

/// A template environment for text templates (report, mail, comment): blocks trim their own
/// line, and the text keeps its last newline; with the `short` filter (first 12 characters,
/// how kbot names commits) and the named templates added.
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
}
