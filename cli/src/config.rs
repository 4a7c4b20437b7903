//! Where the cluster is and who is asking: the controller URL list and the bearer token.
//!
//! These come from flags or the environment (`HCI_URL`, `HCI_TOKEN`) and are checked here, before
//! any request, so that a typo is a usage error (exit 2) rather than a confusing network failure.

use std::path::Path;

use reqwest::Url;

use crate::error::CliError;

/// Parses `http://h1:7001,http://h2:7002` into base URLs, in the order given (duplicates dropped).
/// An element without a scheme gets `http://`; empty elements (a trailing comma) are ignored.
pub fn parse_urls(spec: &str) -> Result<Vec<Url>, CliError> {
    let mut urls: Vec<Url> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let url = parse_one(part)?;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    if urls.is_empty() {
        return Err(CliError::Usage("no controller URL: set HCI_URL or --url (comma separated)".into()));
    }
    Ok(urls)
}

fn parse_one(part: &str) -> Result<Url, CliError> {
    let bad = |why: &str| CliError::Usage(format!("controller URL '{part}': {why}"));
    let text = if part.contains("://") { part.to_string() } else { format!("http://{part}") };
    let url = Url::parse(&text).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => return Err(bad("https is not supported by this build of hcictl; use http://")),
        other => return Err(bad(&format!("scheme '{other}' is not http"))),
    }
    if !matches!(url.host_str(), Some(host) if !host.is_empty()) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials; use HCI_TOKEN"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url)
}

/// Picks the bearer token: `--token`, else `--token-file`, else `HCI_TOKEN`. `None` when none is set
/// (only unauthenticated endpoints can then be used).
pub fn resolve_token(
    flag: Option<String>,
    file: Option<&Path>,
    env: Option<String>,
) -> Result<Option<String>, CliError> {
    let (token, source) = if let Some(t) = flag {
        (t, "--token".to_string())
    } else if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--token-file {}: {e}", path.display())))?;
        (text, format!("--token-file {}", path.display()))
    } else if let Some(t) = env {
        (t, "HCI_TOKEN".to_string())
    } else {
        return Ok(None);
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(CliError::Usage(format!("{source}: the token is empty")));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::Usage(format!("{source}: the token may contain only printable ASCII without spaces")));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lists() {
        let urls = parse_urls("http://127.0.0.1:7001, http://127.0.0.1:7002,").expect("valid");
        let text: Vec<_> = urls.iter().map(Url::as_str).collect();
        assert_eq!(text, ["http://127.0.0.1:7001/", "http://127.0.0.1:7002/"]);

        let urls = parse_urls("10.0.0.1:7001,10.0.0.1:7001,ctl.example:80/api").expect("valid");
        let text: Vec<_> = urls.iter().map(Url::as_str).collect();
        assert_eq!(text, ["http://10.0.0.1:7001/", "http://ctl.example/api"]);

        for bad in
            ["", " , ", "https://h:1", "ftp://h", "http://", "http://u:p@h:1", "http://h:1/?a=b", "http://h:99999"]
        {
            let err = parse_urls(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn token_sources() {
        assert_eq!(resolve_token(None, None, None).expect("ok"), None);
        assert_eq!(resolve_token(None, None, Some("env".into())).expect("ok").as_deref(), Some("env"));
        assert_eq!(resolve_token(Some("flag".into()), None, Some("env".into())).expect("ok").as_deref(), Some("flag"));

        let dir = std::env::temp_dir().join(format!("hcictl-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("admin.token");
        std::fs::write(&file, "secret-token\n").expect("write");
        assert_eq!(resolve_token(None, Some(&file), Some("env".into())).expect("ok").as_deref(), Some("secret-token"));
        let missing = dir.join("missing");
        assert_eq!(resolve_token(None, Some(&missing), None).expect_err("missing").exit_code(), 2);
        std::fs::remove_dir_all(&dir).ok();

        assert!(resolve_token(Some("  ".into()), None, None).is_err());
        assert!(resolve_token(Some("a b".into()), None, None).is_err());
        assert!(resolve_token(Some("tok\u{1b}".into()), None, None).is_err());
    }
}
