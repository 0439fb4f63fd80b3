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
