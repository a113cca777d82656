//! What Truxe mails, each as plain text and HTML, in the operator's brand
//! (`TRUXE_BRAND_NAME`, `TRUXE_BRAND_COLOR`, `TRUXE_BRAND_LOGO_URL`).
//! Everything interpolated into the HTML is escaped: some of it (a user
//! agent, an organization's name) is chosen by whoever triggers the mail.

use super::mail::Mail;

/// The operator's brand, validated at start-up.
#[derive(Debug, Clone)]
pub struct Brand {
    /// Product name in subjects and greetings.
    pub name: String,
    /// Accent colour, `#rrggbb`.
    pub color: String,
    /// Logo shown above each mail (an `https://` URL), if any.
    pub logo_url: Option<String>,
}

impl Default for Brand {
    fn default() -> Self {
        Brand {
            name: "Truxe".into(),
            color: "#2f54eb".into(),
            logo_url: None,
        }
    }
}

/// One kind of mail, with what it needs.
#[derive(Debug, Clone)]
pub enum Letter<'a> {
    /// After sign-up.
    Welcome,
    /// Confirm the address.
    Verify {
        /// The confirmation link.
        link: &'a str,
    },
    /// Reset a forgotten password.
    Reset {
        /// The reset link.
        link: &'a str,
    },
    /// Sign in without a password.
    MagicLink {
        /// The sign-in link.
        link: &'a str,
    },
    /// Join an organization.
    Invitation {
        /// Who invited (an address, or a service account's name).
        inviter: &'a str,
        /// The organization's name.
        organization: &'a str,
        /// The role offered.
        role: &'a str,
        /// The acceptance link.
        link: &'a str,
        /// The token alone, for `POST /organizations/invitations/accept`.
        token: &'a str,
        /// Days until it expires.
        days: u64,
    },
    /// The password was changed or reset.
    PasswordChanged,
    /// Failed sign-ins locked the account.
    AccountLocked {
        /// Minutes until it unlocks.
        minutes: i64,
    },
    /// A sign-in from a browser or app the account had not used.
    NewDevice {
        /// Its user agent, as it said.
        user_agent: &'a str,
        /// Its address, if known.
        ip: &'a str,
    },
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
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

/// Subject, the paragraphs before the button, the button (label, link),
/// and the paragraphs after it.
type Parts = (
    String,
    Vec<String>,
    Option<(&'static str, String)>,
    Vec<String>,
);

impl Letter<'_> {
    fn parts(&self, brand: &Brand) -> Parts {
        let n = &brand.name;
        let ignore = "If this was not you, you can ignore this message.".to_owned();
        let not_you = "If this was not you, reset your password now and review your sessions.";
        match self {
            Letter::Welcome => (
                format!("Welcome to {n}"),
                vec![format!("Your {n} account is ready.")],
                None,
                vec![format!(
                    "If you did not create an account with {n}, tell us by replying to this message."
                )],
            ),
            Letter::Verify { link } => (
                "Confirm your email address".into(),
                vec!["Confirm your email address within 24 hours.".into()],
                Some(("Confirm my address", link.to_string())),
                vec![ignore],
            ),
            Letter::Reset { link } => (
                "Reset your password".into(),
                vec!["Choose a new password within one hour.".into()],
                Some(("Reset my password", link.to_string())),
                vec![ignore],
            ),
            Letter::MagicLink { link } => (
                "Your sign-in link".into(),
                vec![format!("Sign in to {n} within 15 minutes.")],
                Some(("Sign in", link.to_string())),
                vec![ignore],
            ),
            Letter::Invitation {
                inviter,
                organization,
                role,
                link,
                token,
                days,
            } => (
                format!("You are invited to join {organization}"),
                vec![format!(
                    "{inviter} invited you to join {organization} on {n} as {role}. Sign in with this address, then accept within {days} days."
                )],
                Some(("Accept the invitation", link.to_string())),
                vec![
                    format!("Or send this token to POST /organizations/invitations/accept: {token}"),
                    ignore,
                ],
            ),
            Letter::PasswordChanged => (
                "Your password was changed".into(),
                vec![format!("The password of your {n} account was just changed.")],
                None,
                vec![not_you.into()],
            ),
            Letter::AccountLocked { minutes } => (
                "Your account is locked for now".into(),
                vec![format!(
                    "After several failed sign-ins, your {n} account is locked for {minutes} minutes."
                )],
                None,
                vec!["If these attempts were not yours, someone may know your address; consider changing your password.".into()],
            ),
            Letter::NewDevice { user_agent, ip } => (
                format!("New sign-in to {n}"),
                vec![format!(
                    "Your account was just used to sign in from a browser or app it had not used before: {user_agent} ({ip})."
                )],
                None,
                vec![not_you.into()],
            ),
        }
    }

    /// The message to `to`, in text and HTML.
    pub fn mail(&self, brand: &Brand, to: &str, at_ms: i64) -> Mail {
        let (subject, before, button, after) = self.parts(brand);
        let mut text = before.join("\n\n");
        if let Some((_, link)) = &button {
            text.push_str(&format!("\n\n{link}"));
        }
        for p in &after {
            text.push_str(&format!("\n\n{p}"));
        }
        text.push_str(&format!("\n\n— {}\n", brand.name));
        let para = |p: &String| {
            format!(
                "<p style=\"margin:0 0 16px;font:16px/1.5 sans-serif;color:#1f2933\">{}</p>",
                escape(p)
            )
        };
        let logo = brand
            .logo_url
            .as_ref()
            .map(|u| {
                format!(
                    "<img src=\"{}\" alt=\"{}\" height=\"40\" style=\"display:block;margin:0 0 24px\">",
                    escape(u),
                    escape(&brand.name)
                )
            })
            .unwrap_or_default();
        let action = button
            .as_ref()
            .map(|(label, link)| {
                format!(
                    "<p style=\"margin:24px 0\"><a href=\"{l}\" style=\"background:{c};color:#ffffff;padding:12px 20px;border-radius:6px;text-decoration:none;font:600 16px sans-serif\">{label}</a></p>\
                     <p style=\"margin:0 0 16px;font:13px/1.5 sans-serif;color:#52606d\">Or open this link: <a href=\"{l}\" style=\"color:{c}\">{l}</a></p>",
                    l = escape(link),
                    c = brand.color,
                )
            })
            .unwrap_or_default();
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body style=\"margin:0;padding:24px;background:#f5f7fa\">\
             <div style=\"max-width:560px;margin:0 auto;background:#ffffff;padding:32px;border-radius:8px;border-top:4px solid {c}\">\
             {logo}{before}{action}{after}\
             <p style=\"margin:24px 0 0;font:13px sans-serif;color:#7b8794\">{name}</p></div></body></html>",
            title = escape(&subject),
            c = brand.color,
            before = before.iter().map(para).collect::<String>(),
            after = after.iter().map(para).collect::<String>(),
            name = escape(&brand.name),
        );
        Mail {
            to: to.to_owned(),
            subject,
            text,
            html: Some(html),
            at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_chose_is_escaped_in_the_html() {
        let brand = Brand {
            name: "Acme & Co".into(),
            logo_url: Some("https://acme.example/logo.png?a=1&b=\"2\"".into()),
            ..Brand::default()
        };
        let m = Letter::NewDevice {
            user_agent: "<script>alert(1)</script>",
            ip: "203.0.113.9",
        }
        .mail(&brand, "a@example.com", 0);
        let html = m.html.unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("Acme &amp; Co"));
        assert!(html.contains("b=&quot;2&quot;"));
        // The text form is as said.
        assert!(m.text.contains("<script>alert(1)</script> (203.0.113.9)"));
        let m = Letter::Invitation {
            inviter: "a@example.com",
            organization: "\"><img src=x onerror=alert(1)>",
            role: "member",
            link: "https://id.example/accept?token=t&x=\"",
            token: "t",
            days: 7,
        }
        .mail(&Brand::default(), "a@example.com", 0);
        let html = m.html.unwrap();
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("href=\"https://id.example/accept?token=t&amp;x=&quot;\""));
        assert!(m.text.contains("https://id.example/accept?token=t&x=\""));
    }

    #[test]
    fn every_letter_has_a_subject_text_and_html_in_the_brand() {
        let brand = Brand {
            name: "Acme".into(),
            color: "#123456".into(),
            logo_url: None,
        };
        let letters = [
            Letter::Welcome,
            Letter::Verify {
                link: "https://l/1",
            },
            Letter::Reset {
                link: "https://l/2",
            },
            Letter::MagicLink {
                link: "https://l/3",
            },
            Letter::Invitation {
                inviter: "a@example.com",
                organization: "Org",
                role: "member",
                link: "https://l/4",
                token: "t",
                days: 7,
            },
            Letter::PasswordChanged,
            Letter::AccountLocked { minutes: 15 },
            Letter::NewDevice {
                user_agent: "ua",
                ip: "ip",
            },
        ];
        for l in letters {
            let m = l.mail(&brand, "a@example.com", 0);
            let html = m.html.clone().unwrap();
            assert!(!m.subject.is_empty() && !m.text.is_empty(), "{l:?}");
            assert!(html.contains("#123456") && m.text.contains("Acme"), "{l:?}");
            if let Letter::Verify { link }
            | Letter::Reset { link }
            | Letter::MagicLink { link }
            | Letter::Invitation { link, .. } = l
            {
                assert!(m.text.contains(link) && html.contains(link), "{l:?}");
            }
        }
    }
}
