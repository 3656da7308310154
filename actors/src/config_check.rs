//! Checks shared by every part of the configuration, each answering with a message that names
//! the key, so that a bad setting stops the start instead of panicking or wedging later.

/// Longest any configured wait, interval or validity may be, in seconds (30 days): beyond any
/// sensible setting, and far from where sums with `Instant` or `chrono` overflow.
pub const MAX_SECS: u64 = 30 * 24 * 3600;
/// Size limits: at least 1 KiB (a limit of 0 refuses everything), at most 1 GiB (held in
/// memory).
pub const MIN_BODY_BYTES: usize = 1024;
pub const MAX_BODY_BYTES: usize = 1 << 30;
/// Most commands one batching writer's transaction may carry (ledger and workflows alike).
pub const MAX_BATCH: usize = 10_000;

/// `value` within `min..=max`, or a message naming `key`.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), String> {
    if value < min || value > max {
        return Err(format!(
            "{key} must be between {min} and {max}, got {value}"
        ));
    }
    Ok(())
}

/// An absolute `http://` or `https://` URL with a host and nothing after its path (no
/// credentials, query or fragment): the base other URLs are built on.
pub fn check_base_url(key: &str, value: &str) -> Result<(), String> {
    let problem = match url::Url::parse(value) {
        Err(error) => Some(error.to_string()),
        Ok(url) if !["http", "https"].contains(&url.scheme()) => {
            Some("the scheme must be http or https".to_owned())
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("it has no host".to_owned()),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            Some("it must not carry credentials".to_owned())
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            Some("it must not have a query or fragment".to_owned())
        }
        Ok(_) => None,
    };
    match problem {
        Some(problem) => Err(format!(
            "{key} must be an absolute http(s) URL such as https://atelier.example.com, got \
             {value:?}: {problem}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_absolute_http_urls() {
        for good in [
            "http://127.0.0.1:8080",
            "https://atelier.example.com/",
            "https://example.com/prefix",
        ] {
            assert_eq!(check_base_url("k", good), Ok(()), "{good}");
        }
        for bad in [
            "notaurl",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?a=1",
            "/relative",
            "",
        ] {
            let error = check_base_url("k", bad).unwrap_err();
            assert!(
                error.starts_with("k must be an absolute http(s) URL"),
                "{error}"
            );
        }
    }

    #[test]
    fn ranges_are_inclusive_and_named() {
        assert_eq!(check_range("k", 5, 1, 5), Ok(()));
        assert_eq!(
            check_range("k", 0, 1, 5),
            Err("k must be between 1 and 5, got 0".to_owned())
        );
    }
}
