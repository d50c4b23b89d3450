//! Message templates: plain text and HTML for the invitation and the password reset,
//! built in, each overridable by a file of the same name in the templates directory
//! (`invite.txt`, `invite.html`, `invite.subject`, `reset.txt`, `reset.html`,
//! `reset.subject`). Placeholders: `{{name}}`, `{{company}}`, `{{link}}`,
//! `{{expires}}`; values are HTML-escaped in the HTML part.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::store::MessageKind;

/// One kind's subject and bodies.
#[derive(Debug, Clone)]
struct Template {
    subject: String,
    text: String,
    html: String,
}

/// The templates in force.
#[derive(Debug, Clone)]
pub struct Templates {
    invite: Template,
    reset: Template,
}

/// A rendered message (its bodies hold the link: never log them).
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// What goes into a message.
pub struct Vars<'a> {
    pub name: &'a str,
    pub company: &'a str,
    pub link: &'a str,
    pub expires_at: DateTime<Utc>,
}

impl Default for Templates {
    fn default() -> Self {
        Self {
            invite: Template {
                subject: "You're invited to {{company}}".into(),
                text: include_str!("templates/invite.txt").into(),
                html: include_str!("templates/invite.html").into(),
            },
            reset: Template {
                subject: "Reset your {{company}} password".into(),
                text: include_str!("templates/reset.txt").into(),
                html: include_str!("templates/reset.html").into(),
            },
        }
    }
}

impl Templates {
    /// The built-in templates with every override found in `dir` applied. A
    /// missing directory or file keeps the built-in one.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let mut t = Self::default();
        for (stem, tpl) in [("invite", &mut t.invite), ("reset", &mut t.reset)] {
            for (ext, slot) in [
                ("subject", &mut tpl.subject),
                ("txt", &mut tpl.text),
                ("html", &mut tpl.html),
            ] {
                let path = dir.join(format!("{stem}.{ext}"));
                match std::fs::read_to_string(&path) {
                    Ok(s) => {
                        *slot = if ext == "subject" {
                            s.trim().to_string()
                        } else {
                            s
                        };
                        tracing::info!(path = %path.display(), "mail template override loaded");
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(std::io::Error::new(
                            e.kind(),
                            format!("cannot read {}: {e}", path.display()),
                        ));
                    }
                }
            }
        }
        Ok(t)
    }

    pub fn render(&self, kind: MessageKind, v: &Vars<'_>) -> Rendered {
        let t = match kind {
            MessageKind::Invite => &self.invite,
            MessageKind::PasswordReset => &self.reset,
        };
        let expires = v.expires_at.format("%Y-%m-%d %H:%M UTC").to_string();
        let fill = |s: &str, esc: fn(&str) -> String| {
            s.replace("{{name}}", &esc(v.name))
                .replace("{{company}}", &esc(v.company))
                .replace("{{link}}", &esc(v.link))
                .replace("{{expires}}", &esc(&expires))
        };
        Rendered {
            subject: fill(&t.subject, |s| s.replace(['\r', '\n'], " ")),
            text: fill(&t.text, str::to_string),
            html: fill(&t.html, html_escape),
        }
    }
}

fn html_escape(s: &str) -> String {
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
    use super::*;

    #[test]
    fn renders_and_escapes() {
        let t = Templates::default();
        let r = t.render(
            MessageKind::Invite,
            &Vars {
                name: "Ann <O'Neil>",
                company: "Acme & Co",
                link: "https://x.example/accept-invite?token=abc",
                expires_at: Utc::now(),
            },
        );
        assert_eq!(r.subject, "You're invited to Acme & Co");
        assert!(r.text.contains("Hello Ann <O'Neil>,"));
        assert!(r.text.contains("https://x.example/accept-invite?token=abc"));
        assert!(r.html.contains("Ann &lt;O&#39;Neil&gt;"));
        assert!(r.html.contains("Acme &amp; Co"));
        assert!(!format!("{r:?}").contains("token=abc"));
    }

    #[test]
    fn files_override_the_built_in_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reset.txt"), "Hi {{name}}: {{link}}").unwrap();
        std::fs::write(
            dir.path().join("reset.subject"),
            "New password for {{company}}\n",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        let r = t.render(
            MessageKind::PasswordReset,
            &Vars {
                name: "Bo",
                company: "Acme",
                link: "L",
                expires_at: Utc::now(),
            },
        );
        assert_eq!(r.text, "Hi Bo: L");
        assert_eq!(r.subject, "New password for Acme");
        assert!(r.html.contains("Choose a new password"));
        // Missing directory: built-ins.
        assert!(Templates::load(&dir.path().join("nope")).is_ok());
    }
}
