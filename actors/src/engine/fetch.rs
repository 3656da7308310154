//! Downloading images: results from providers and `https://` inputs from wherever a client
//! pointed. Both are size-limited, time-limited and judged by their bytes; inputs may only come
//! from public addresses (unless the operator allows the host), checked on the addresses the
//! connection will actually use, so a DNS answer cannot be swapped in between.
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;

use crate::net::is_public;
use crate::storage::{Bytes, ImageKind};
use crate::workflow::FailureCode;

pub enum Download {
    Image(Bytes),
    /// Retrying cannot help.
    Refused(FailureCode, String),
    Transient(String),
}

/// Fetches an input image for a provider.
pub async fn input(
    url: &str,
    allowed_hosts: &[String],
    limit: usize,
    timeout: Duration,
) -> Download {
    let refused = |message: String| Download::Refused(FailureCode::InputUnavailable, message);
    let Ok(parsed) = url::Url::parse(url) else {
        return refused(format!("{url} is not a URL"));
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return refused(format!("{url} names no host"));
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let allowed = allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(&host));
    let addresses: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(addresses) => addresses.collect(),
        Err(error) => return Download::Transient(format!("cannot resolve {host}: {error}")),
    };
    if addresses.is_empty() {
        return Download::Transient(format!("{host} has no address"));
    }
    if !allowed && let Some(private) = addresses.iter().find(|address| !is_public(address.ip())) {
        return refused(format!(
            "{host} resolves to {} which is not public",
            private.ip()
        ));
    }
    let client = match reqwest::Client::builder()
        .resolve_to_addrs(&host, &addresses)
        // A redirect would escape the address check.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => return Download::Transient(error.to_string()),
    };
    let unavailable = FailureCode::InputUnavailable;
    download(&client, url, limit, timeout, unavailable, unavailable).await
}

/// Fetches `url` with `client`: at most `limit` bytes, within `timeout`, and only a PNG, JPEG
/// or WebP image. `refused` is the failure code when the URL refuses (4xx), `invalid` when
/// what it serves is too large or not an image.
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
    timeout: Duration,
    refused: FailureCode,
    invalid: FailureCode,
) -> Download {
    let response = match client.get(url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(error) => return Download::Transient(format!("download failed: {error}")),
    };
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Download::Transient(format!("{url} answered {status}"));
    }
    if !status.is_success() {
        return Download::Refused(
            refused,
            format!("{url} answered {status} (expired or gone)"),
        );
    }
    let too_large = || Download::Refused(invalid, format!("larger than {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|length| length as usize > limit)
    {
        return too_large();
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() > limit => return too_large(),
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(error) => return Download::Transient(format!("download interrupted: {error}")),
        }
    }
    if ImageKind::sniff(&body).is_none() {
        return Download::Refused(invalid, "not a PNG, JPEG or WebP image".into());
    }
    Download::Image(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inputs_from_private_addresses_are_refused_unless_allowed() {
        let timeout = Duration::from_secs(2);
        let refused = input("http://localhost:9/a.png", &[], 1024, timeout).await;
        assert!(
            matches!(refused, Download::Refused(FailureCode::InputUnavailable, ref m) if m.contains("not public")),
            "localhost was fetched"
        );
        // Allowed, it is fetched (and fails only because nothing listens there).
        let allowed = input(
            "http://localhost:9/a.png",
            &["localhost".into()],
            1024,
            timeout,
        )
        .await;
        assert!(matches!(allowed, Download::Transient(_)));
    }
}
