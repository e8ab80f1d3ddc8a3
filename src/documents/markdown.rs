//! A document's Markdown as HTML for its preview, rendered safely: raw HTML in the text is
//! shown as text, and a link or image may only point at http(s), mail or this site (no
//! `javascript:`). The same on the server's first render and in the page.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

/// Whether a link's target is one a preview may carry: a web or mail address, or a path.
fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    let scheme_end = lower.find(':');
    let path_start = lower.find(['/', '?', '#']);
    match scheme_end {
        // No scheme (a relative path), or a colon after the path begins.
        None => true,
        Some(colon) if path_start.is_some_and(|p| p < colon) => true,
        Some(_) => ["http:", "https:", "mailto:"].iter().any(|scheme| lower.starts_with(scheme)),
    }
}

fn checked(url: CowStr<'_>) -> CowStr<'_> {
    if safe_url(&url) {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// The preview's HTML.
pub fn to_html(text: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(text, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: checked(dest_url), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: checked(dest_url), title, id })
        }
        other => other,
    });
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_and_html_does_not() {
        assert_eq!(to_html("# Agenda\n\n- **one**"), "<h1>Agenda</h1>\n<ul>\n<li><strong>one</strong></li>\n</ul>\n");
        let html = to_html("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)>");
        assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let html = to_html("[a](javascript:alert(1)) [b](https://example.org) [c](/rooms/lobby) ![d](data:x)");
        assert!(!html.contains("javascript:") && !html.contains("data:"), "{html}");
        assert!(html.contains(r#"href="https://example.org""#) && html.contains(r#"href="/rooms/lobby""#));
        assert!(safe_url("notes/a:b") && safe_url("#top") && !safe_url(" JavaScript:x") && !safe_url("vbscript:x"));
    }
}
