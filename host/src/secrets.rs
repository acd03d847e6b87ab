//! Keeping secrets out of logs, errors and files.

/// A URL with its password replaced by `***` (`postgresql://user:***@host/db`).
pub fn redact_url(url: &str) -> String {
    let url = &redact_query_password(url);
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let redacted = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_owned(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], redacted, &rest[at..])
}

/// `?password=…` (libpq style) becomes `?password=***`.
fn redact_query_password(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_owned();
    };
    let (base, query) = url.split_at(q + 1);
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{base}{}", parts.join("&"))
}

/// Replaces every occurrence of `secret` in `text` (for messages from libraries that
/// may echo what they were given).
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 3 => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgresql://u:p%40ss@host:5432/db"),
            "postgresql://u:***@host:5432/db"
        );
        assert_eq!(
            redact_url("redis://:secret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgresql://host/db?sslmode=disable&password=x"),
            "postgresql://host/db?sslmode=disable&password=***"
        );
        assert_eq!(redact_url("http://localhost:6333"), "http://localhost:6333");
        assert_eq!(
            redact_url("postgresql://u@host/db"),
            "postgresql://u@host/db"
        );
    }
}
