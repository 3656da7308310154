//! Downloading images: results from providers and `https://` inputs from wherever a client
//! pointed. Both are size-limited, time-limited and judged by their bytes, and both go through
//! a `Fetcher` (`crate::outbound`): only public addresses, unless the operator allows the host,
//! checked on the addresses the connection actually uses and on every redirect.
use std::time::Duration;

use futures::StreamExt;

use crate::images::ImageLimits;
use crate::outbound::{self, Fetcher};
use crate::storage::{Bytes, ImageKind};
use crate::workflow::FailureCode;

/// Why a download brought no image.
#[derive(Debug)]
pub enum DownloadError {
    /// Retrying cannot help.
    Refused(FailureCode, String),
    Transient(String),
}

/// Fetches an input image for a provider.
pub async fn input(
    fetcher: &Fetcher,
    url: &str,
    limit: usize,
    timeout: Duration,
    images: &ImageLimits,
) -> Result<Bytes, DownloadError> {
    let unavailable = FailureCode::InputUnavailable;
    let bytes = download(fetcher, url, limit, timeout, unavailable, unavailable).await?;
    // The provider would decode it: judged from its header, as uploads are.
    match images.check(&bytes) {
        Ok(_) => Ok(bytes),
        Err(error) => Err(DownloadError::Refused(
            unavailable,
            format!("{url}: {error}"),
        )),
    }
}

/// Fetches `url` with `fetcher`: at most `limit` bytes, within `timeout`, and only a PNG, JPEG
/// or WebP image. `refused` is the failure code when the URL refuses (4xx) or the policy does
/// (not a public address), `invalid` when what it serves is too large or not an image.
pub async fn download(
    fetcher: &Fetcher,
    url: &str,
    limit: usize,
    timeout: Duration,
    refused: FailureCode,
    invalid: FailureCode,
) -> Result<Bytes, DownloadError> {
    if let Some(inline) = url.strip_prefix("data:") {
        return decode_inline(inline, limit, invalid);
    }
    let request = match fetcher.get(url) {
        Ok(request) => request,
        Err(not_public) => return Err(DownloadError::Refused(refused, not_public.to_string())),
    };
    let response = match request.timeout(timeout).send().await {
        Ok(response) => response,
        Err(error) => {
            return match outbound::refusal(&error) {
                Some(not_public) => Err(DownloadError::Refused(refused, not_public.to_string())),
                None => Err(DownloadError::Transient(format!(
                    "download failed: {error}"
                ))),
            };
        }
    };
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(DownloadError::Transient(format!("{url} answered {status}")));
    }
    if !status.is_success() {
        return Err(DownloadError::Refused(
            refused,
            format!("{url} answered {status} (expired or gone)"),
        ));
    }
    let too_large = || {
        Err(DownloadError::Refused(
            invalid,
            format!("larger than {limit} bytes"),
        ))
    };
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
            Err(error) => {
                return Err(DownloadError::Transient(format!(
                    "download interrupted: {error}"
                )));
            }
        }
    }
    if ImageKind::sniff(&body).is_none() {
        return Err(DownloadError::Refused(
            invalid,
            "not a PNG, JPEG or WebP image".into(),
        ));
    }
    Ok(Bytes::from(body))
}

/// A result inlined as a `data:` URI (Cog without an upload URL): judged as a download is.
fn decode_inline(inline: &str, limit: usize, invalid: FailureCode) -> Result<Bytes, DownloadError> {
    use base64::Engine;
    let payload = match inline.split_once(',') {
        Some((header, payload)) if header.ends_with(";base64") => payload,
        _ => {
            return Err(DownloadError::Refused(
                invalid,
                "a data: result must be base64".into(),
            ));
        }
    };
    // Base64 is 4 characters per 3 bytes: anything longer decodes past the limit.
    if payload.len() / 4 * 3 > limit + 3 {
        return Err(DownloadError::Refused(
            invalid,
            format!("larger than {limit} bytes"),
        ));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(payload.trim()) else {
        return Err(DownloadError::Refused(
            invalid,
            "the data: result is not valid base64".into(),
        ));
    };
    if bytes.len() > limit {
        return Err(DownloadError::Refused(
            invalid,
            format!("larger than {limit} bytes"),
        ));
    }
    if ImageKind::sniff(&bytes).is_none() {
        return Err(DownloadError::Refused(
            invalid,
            "not a PNG, JPEG or WebP image".into(),
        ));
    }
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inline_results_are_decoded_and_judged_like_downloads() {
        use base64::Engine;
        let mut png = Vec::new();
        image::RgbImage::new(2, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
        let fetcher = Fetcher::new([]).unwrap();
        let fetch = |url: String, limit| {
            let fetcher = fetcher.clone();
            async move {
                let invalid = FailureCode::InvalidResult;
                download(
                    &fetcher,
                    &url,
                    limit,
                    Duration::from_secs(1),
                    invalid,
                    invalid,
                )
                .await
            }
        };
        let url = format!("data:image/png;base64,{encoded}");
        assert!(matches!(fetch(url.clone(), 1 << 20).await, Ok(bytes) if bytes.as_ref() == png));
        assert!(matches!(
            fetch(url, 10).await,
            Err(DownloadError::Refused(FailureCode::InvalidResult, _))
        ));
        for bad in [
            "data:image/png,raw",
            "data:image/png;base64,***",
            "data:text/plain;base64,aGk=",
        ] {
            assert!(
                matches!(
                    fetch(bad.into(), 1 << 20).await,
                    Err(DownloadError::Refused(..))
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn inputs_from_private_addresses_are_refused_unless_allowed() {
        let timeout = Duration::from_secs(2);
        let images = ImageLimits::default();
        let fetcher = Fetcher::new([]).unwrap();
        let refused = input(&fetcher, "http://localhost:9/a.png", 1024, timeout, &images).await;
        assert!(
            matches!(refused, Err(DownloadError::Refused(FailureCode::InputUnavailable, ref m)) if m.contains("not public")),
            "localhost was fetched"
        );
        // Allowed, it is fetched (and fails only because nothing listens there).
        let fetcher = Fetcher::new(["localhost".to_owned()]).unwrap();
        let allowed = input(&fetcher, "http://localhost:9/a.png", 1024, timeout, &images).await;
        assert!(matches!(allowed, Err(DownloadError::Transient(_))));
    }
}
