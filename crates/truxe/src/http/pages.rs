//! Truxe's hosted pages: server-rendered HTML in the operator's brand,
//! usable without JavaScript, under a strict Content Security Policy (no
//! script at all, styles only from `/assets/truxe.css`, forms posting only
//! to Truxe and the one application the page answers). Pages that ask for
//! a passkey load one script, `/assets/passkey.js` (WebAuthn has no HTML
//! form), and allow nothing else.
//!
//! Everything interpolated is escaped; pages are built from a few helpers
//! so that stays true.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::service::escape;
use crate::service::Brand;

/// The stylesheet, built once from the brand (its colour is checked at
/// start-up to be `#rrggbb`, so it cannot break out of the rule).
pub fn stylesheet(brand: &Brand) -> String {
    format!(
        r#":root{{--accent:{accent};color-scheme:light dark}}
*{{box-sizing:border-box}}
body{{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2129}}
main{{width:100%;max-width:26rem;margin:1rem;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12)}}
h1{{font-size:1.35rem;margin:0 0 1rem}}
h2{{font-size:1.05rem;margin:1.5rem 0 .5rem}}
ul.scopes li form button{{margin-top:.25rem;padding:.4rem}}
.logo{{display:block;max-height:3rem;margin:0 0 1rem}}
label{{display:block;font-weight:600;margin:1rem 0 .25rem}}
input[type=email],input[type=password],input[type=text]{{width:100%;padding:.6rem .7rem;border:1px solid #8a9099;border-radius:8px;font:inherit}}
input:focus-visible,button:focus-visible{{outline:3px solid var(--accent);outline-offset:2px}}
button{{margin-top:1.25rem;width:100%;padding:.7rem;border:0;border-radius:8px;font:inherit;font-weight:600;cursor:pointer;background:var(--accent);color:#fff}}
button.secondary{{background:transparent;color:#1d2129;border:1px solid #8a9099}}
a.button{{display:block;margin-top:.75rem;padding:.7rem;border:1px solid #8a9099;border-radius:8px;text-align:center;font-weight:600;color:inherit;text-decoration:none}}
a:focus-visible{{outline:3px solid var(--accent);outline-offset:2px}}
.or{{text-align:center;margin:1rem 0 0}}
.error{{padding:.75rem;border-radius:8px;background:#fde8e8;color:#8a1c1c;margin:0 0 1rem}}
ul.scopes{{padding-left:1.2rem}}
.muted{{color:#5c636e;font-size:.9rem}}
main.wide{{max-width:68rem;align-self:flex-start}}
nav{{margin:0 0 1rem;display:flex;flex-wrap:wrap;gap:.25rem 1rem}}
nav a[aria-current]{{font-weight:700}}
table{{width:100%;border-collapse:collapse;font-size:.9rem;margin:.5rem 0}}
th,td{{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #d5d8dc;vertical-align:top;overflow-wrap:anywhere}}
td form,.actions form{{display:inline-block;margin:0 .25rem .25rem 0}}
td button,.actions button,form.filter button{{width:auto;margin:0;padding:.35rem .7rem}}
form.filter{{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-end}}
form.filter label{{margin:0}}
form.filter input{{width:auto}}
code{{overflow-wrap:anywhere}}
.qr svg{{display:block;width:12rem;height:12rem;margin:1rem auto;background:#fff;padding:.5rem}}
@media (prefers-color-scheme:dark){{body{{background:#15171a;color:#e6e8eb}}main{{background:#1f2227}}button.secondary{{color:#e6e8eb}}.muted{{color:#a2a8b1}}.error{{background:#4a1f1f;color:#ffd7d7}}}}
"#,
        accent = brand.color
    )
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!(
        r#"<input type="hidden" name="{}" value="{}">"#,
        escape(name),
        escape(value)
    )
}

/// A labelled input named as its id.
pub fn field(id: &str, label: &str, kind: &str, autocomplete: &str, extra: &str) -> String {
    named_field(id, id, label, kind, autocomplete, extra)
}

/// A labelled input whose name differs from its id (several forms on a
/// page post the same name; ids must stay unique).
pub fn named_field(
    id: &str,
    name: &str,
    label: &str,
    kind: &str,
    autocomplete: &str,
    extra: &str,
) -> String {
    format!(
        r#"<label for="{id}">{label}</label><input id="{id}" name="{name}" type="{kind}" autocomplete="{autocomplete}" required {extra}>"#,
        id = escape(id),
        name = escape(name),
        label = escape(label),
        kind = escape(kind),
        autocomplete = escape(autocomplete),
    )
}

/// An error message screen readers announce.
pub fn alert(message: &str) -> String {
    format!(r#"<p class="error" role="alert">{}</p>"#, escape(message))
}

/// A paragraph of text.
pub fn para(text: &str) -> String {
    format!("<p>{}</p>", escape(text))
}

/// A whole page: `body` is HTML built with the helpers above. `form_to`
/// is the one other origin forms may lead to (the application the page
/// answers), if any.
pub fn page(
    brand: &Brand,
    status: StatusCode,
    title: &str,
    body: &str,
    form_to: Option<&str>,
) -> Response {
    render(brand, status, title, body, form_to, Frame::default())
}

/// How a page is framed: the passkey script, a wide layout (the console).
#[derive(Default, Clone, Copy)]
struct Frame {
    script: bool,
    wide: bool,
}

/// A console page: wide, with its navigation first.
pub fn console(brand: &Brand, status: StatusCode, title: &str, nav: &str, body: &str) -> Response {
    let body = format!("{nav}{body}");
    let frame = Frame {
        script: false,
        wide: true,
    };
    render(brand, status, title, &body, None, frame)
}

/// A page with a passkey form (see [`passkey_form`]): [`page`], plus the
/// passkey script.
pub fn with_passkeys(
    brand: &Brand,
    status: StatusCode,
    title: &str,
    body: &str,
    form_to: Option<&str>,
) -> Response {
    let frame = Frame {
        script: true,
        wide: false,
    };
    render(brand, status, title, body, form_to, frame)
}

/// The passkey script: served from Truxe itself, the only script a page
/// may run.
pub const PASSKEY_SCRIPT: &str = include_str!("../../assets/passkey.js");

/// A form that asks the browser's authenticator (`create` a passkey, or
/// `get` one) with the server's `options`, then posts `fields` and the
/// answer (`credential`) to `action`. `autostart` asks at once.
pub fn passkey_form(
    kind: &str,
    action: &str,
    options: &serde_json::Value,
    fields: &str,
    button: &str,
    autostart: bool,
) -> String {
    format!(
        r#"<form method="post" action="{action}" data-passkey="{kind}" data-options="{options}"{auto}>{fields}<input type="hidden" name="credential" value=""><p class="muted" role="status" data-passkey-status></p><noscript><p class="muted">Passkeys need JavaScript.</p></noscript><button type="submit">{button}</button></form>"#,
        action = escape(action),
        kind = escape(kind),
        options = escape(&options.to_string()),
        auto = if autostart { " data-autostart" } else { "" },
        button = escape(button),
    )
}

fn render(
    brand: &Brand,
    status: StatusCode,
    title: &str,
    body: &str,
    form_to: Option<&str>,
    frame: Frame,
) -> Response {
    let script = frame.script;
    let logo = brand
        .logo_url
        .as_deref()
        .map(|u| {
            format!(
                r#"<img class="logo" src="{}" alt="{}">"#,
                escape(u),
                escape(&brand.name)
            )
        })
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {name}</title>
<link rel="stylesheet" href="/assets/truxe.css">
{script_tag}</head>
<body>
<main{wide}>
{logo}<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
        name = escape(&brand.name),
        wide = if frame.wide { r#" class="wide""# } else { "" },
        script_tag = if script {
            "<script src=\"/assets/passkey.js\" defer></script>\n"
        } else {
            ""
        },
    );
    let form_action = match form_to.and_then(origin) {
        Some(o) => format!("'self' {o}"),
        None => "'self'".to_owned(),
    };
    let img = match brand.logo_url.as_deref().and_then(origin) {
        Some(o) => format!("'self' {o}"),
        None => "'self'".to_owned(),
    };
    let script_src = if script { "script-src 'self'; " } else { "" };
    let csp = format!(
        "default-src 'none'; {script_src}style-src 'self'; img-src {img}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

/// An error page: what went wrong, and that the application cannot be
/// returned to.
pub fn error(brand: &Brand, status: StatusCode, message: &str) -> Response {
    let body = format!(
        "{}{}",
        alert(message),
        para("You can close this page and start again from the application.")
    );
    page(brand, status, "Something went wrong", &body, None)
}

/// `scheme://host[:port]` of a URL, for CSP source lists.
fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    match u.origin() {
        url::Origin::Tuple(..) => Some(u.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}
