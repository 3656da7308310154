//! Image references in generation requests: `data:image/...;base64,...`, `upload:<id>` or a
//! URL. Decoding and address checks happen here, before anything is written.
use std::net::IpAddr;

use atelier_actors::net::is_public;

use atelier_actors::images::{ImageError, ImageLimits};
use atelier_actors::storage::ImageKind;
use base64::Engine;
use uuid::Uuid;

/// Why an image reference is refused: a machine-readable code and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Self {
            code: "invalid_image",
            reason,
        }
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

impl From<ImageError> for Refusal {
    fn from(error: ImageError) -> Self {
        let code = match error {
            ImageError::TooLarge { .. } => "image_too_large",
            ImageError::Unreadable(_) => "invalid_image",
        };
        Self {
            code,
            reason: error.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Data { kind: ImageKind, bytes: Vec<u8> },
    Upload(Uuid),
    Url(String),
}

/// Parses `raw`, or says what is wrong with it (for the client; the field name is added by the
/// caller). A `data:` image is judged by `limits` from its header.
pub fn parse(
    raw: &str,
    allowed_hosts: &[String],
    limits: &ImageLimits,
) -> Result<ImageRef, Refusal> {
    if let Some(rest) = raw.strip_prefix("data:") {
        let image = parse_data(rest)?;
        if let ImageRef::Data { bytes, .. } = &image {
            limits.check(bytes)?;
        }
        return Ok(image);
    }
    if let Some(id) = raw.strip_prefix("upload:") {
        return Uuid::parse_str(id)
            .map(ImageRef::Upload)
            .map_err(|_| "upload: must be followed by an upload id".into());
    }
    Ok(parse_url(raw, allowed_hosts).map(ImageRef::Url)?)
}

fn parse_data(rest: &str) -> Result<ImageRef, String> {
    let (header, payload) = rest
        .split_once(',')
        .ok_or("a data: URI needs a comma before its payload")?;
    let mime = header
        .strip_suffix(";base64")
        .ok_or("a data: URI must be base64-encoded (;base64,)")?;
    let declared = ImageKind::from_mime(mime)
        .ok_or("a data: URI must be image/png, image/jpeg or image/webp")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| "the data: URI's payload is not valid base64".to_owned())?;
    match ImageKind::sniff(&bytes) {
        Some(kind) if kind == declared => Ok(ImageRef::Data { kind, bytes }),
        Some(kind) => Err(format!(
            "the data: URI says {} but holds {}",
            declared.mime(),
            kind.mime()
        )),
        None => Err(format!(
            "the data: URI does not hold a {} image",
            declared.mime()
        )),
    }
}

/// Longest image URL accepted, in bytes: it is stored with the generation and echoed on every
/// read of it.
const MAX_URL_BYTES: usize = 4096;

/// `https://` to a public address; `http://` and private addresses only for allowed hosts.
/// Host names are resolved (and checked again) when the image is fetched.
fn parse_url(raw: &str, allowed_hosts: &[String]) -> Result<String, String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("a URL may be at most {MAX_URL_BYTES} bytes"));
    }
    let url = url::Url::parse(raw)
        .map_err(|_| "must be an https:// URL, a data:image/... URI or upload:<id>".to_owned())?;
    let host = url.host_str().ok_or("the URL has no host")?;
    let allowed = allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(host));
    match url.scheme() {
        "https" => {}
        "http" if allowed => {}
        "http" => return Err(format!("http:// is not allowed for {host}; use https://")),
        other => return Err(format!("{other}: URLs are not supported")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry credentials".into());
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(address) = literal.parse::<IpAddr>()
        && !allowed
        && !is_public(address)
    {
        return Err(format!("{address} is not a public address"));
    }
    if !allowed && (host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost")) {
        return Err(format!("{host} is not a public host"));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::GrayImage::new(width, height)
            .write_to(&mut bytes, image::ImageFormat::Png)
            .unwrap();
        bytes.into_inner()
    }

    fn parse(raw: &str, allowed_hosts: &[String]) -> Result<ImageRef, Refusal> {
        super::parse(raw, allowed_hosts, &ImageLimits::default())
    }

    fn data_uri(mime: &str, bytes: &[u8]) -> String {
        format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn data_uris_must_hold_the_image_they_declare() {
        let png = png(3, 2);
        assert_eq!(
            parse(&data_uri("image/png", &png), &[]),
            Ok(ImageRef::Data {
                kind: ImageKind::Png,
                bytes: png.clone()
            })
        );
        assert!(parse(&data_uri("image/jpeg", &png), &[]).is_err());
        // A header cut short cannot say how large the image is.
        let truncated = &png[..20];
        assert_eq!(
            parse(&data_uri("image/png", truncated), &[])
                .unwrap_err()
                .code,
            "invalid_image"
        );
        assert!(parse(&data_uri("image/gif", b"GIF89a"), &[]).is_err());
        assert!(parse(&data_uri("image/png", b"<html>"), &[]).is_err());
        assert!(parse("data:image/png;base64,***", &[]).is_err());
        assert!(parse("data:image/png,raw", &[]).is_err());
    }

    #[test]
    fn data_uris_larger_than_the_limits_are_refused() {
        let refusal = parse(&data_uri("image/png", &png(10_000, 10_000)), &[]).unwrap_err();
        assert_eq!(refusal.code, "image_too_large", "{}", refusal.reason);
        assert!(refusal.reason.contains("10000×10000"), "{}", refusal.reason);
    }

    #[test]
    fn urls_must_be_https_to_public_hosts_unless_allowed() {
        assert!(parse("https://example.com/a.png", &[]).is_ok());
        for bad in [
            "http://example.com/a.png",
            "ftp://example.com/a.png",
            "https://127.0.0.1/a.png",
            "https://10.0.0.8/a.png",
            "https://169.254.169.254/latest",
            "https://[::1]/a.png",
            "https://[::ffff:10.0.0.1]/a.png",
            "https://[::7f00:1]/a.png",
            "https://[64:ff9b::a9fe:a9fe]/latest",
            "https://[2002:a00:1::1]/a.png",
            "https://[fec0::1]/a.png",
            "https://198.18.0.1/a.png",
            "https://192.0.0.8/a.png",
            "https://240.0.0.1/a.png",
            "https://0x7f000001/a.png",
            "https://localhost/a.png",
            "https://user:pw@example.com/a.png",
            "not a url",
        ] {
            assert!(parse(bad, &[]).is_err(), "{bad} accepted");
        }
        let allowed = ["127.0.0.1".to_owned()];
        assert!(parse("http://127.0.0.1:9000/a.png", &allowed).is_ok());
        assert!(parse("upload:not-an-id", &[]).is_err());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(parse(&long, &[]).is_err());
        let id = Uuid::new_v4();
        assert_eq!(
            parse(&format!("upload:{id}"), &[]),
            Ok(ImageRef::Upload(id))
        );
    }
}
