//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), as Replicate sends them:
//! `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the `whsec_` secret's base64 bytes.
//! Several secrets may be configured so that a rotation loses no callback; the timestamp must
//! be within five minutes either way, so a captured callback cannot be replayed later.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a callback's signature was refused (all answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a number of seconds")]
    MalformedTimestamp,
    #[error("webhook-timestamp is more than five minutes from now")]
    StaleTimestamp,
    #[error("no signature matches")]
    NoMatch,
}

/// A signing secret: the bytes behind `whsec_<base64>`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        match STANDARD.decode(encoded) {
            Ok(bytes) if !bytes.is_empty() => Ok(Self(bytes)),
            _ => Err("a webhook secret is `whsec_` followed by base64".into()),
        }
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for a message (what a provider sends; used by emulators).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, &timestamp.to_string(), body).finalize();
        format!("v1,{}", STANDARD.encode(tag.into_bytes()))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Rejected> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .ok_or(Rejected::MissingHeader(name))
}

/// Accepts the callback when any of its `v1` signatures matches any of `secrets`.
pub fn verify(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    unix_now: i64,
) -> Result<(), Rejected> {
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    let sent_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Rejected::MalformedTimestamp)?;
    if (unix_now - sent_at).abs() > TOLERANCE_SECS {
        return Err(Rejected::StaleTimestamp);
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        // A bare `v1,` decodes to nothing; it must never match.
        .filter(|tag| !tag.is_empty())
        .collect();
    let matches = secrets.iter().any(|secret| {
        candidates.iter().any(|tag| {
            // `verify_slice` compares in constant time.
            secret.mac(id, timestamp, body).verify_slice(tag).is_ok()
        })
    });
    if matches {
        Ok(())
    } else {
        Err(Rejected::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    const NOW: i64 = 1_790_000_000;
    const BODY: &[u8] = br#"{"id":"p1","status":"succeeded"}"#;

    fn secret(seed: &[u8]) -> Secret {
        Secret::parse(&format!("whsec_{}", STANDARD.encode(seed))).unwrap()
    }

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn a_valid_signature_is_accepted_and_a_changed_body_is_not() {
        let key = secret(b"current");
        let signed = headers(&key.sign("msg_1", NOW, BODY), NOW);
        assert_eq!(
            verify(std::slice::from_ref(&key), &signed, BODY, NOW),
            Ok(())
        );
        assert_eq!(verify(&[key], &signed, b"{}", NOW), Err(Rejected::NoMatch));
    }

    #[test]
    fn a_wrong_secret_an_empty_signature_or_a_missing_header_is_refused() {
        let key = secret(b"current");
        let other = secret(b"someone else");
        let signed = headers(&other.sign("msg_1", NOW, BODY), NOW);
        assert_eq!(
            verify(std::slice::from_ref(&key), &signed, BODY, NOW),
            Err(Rejected::NoMatch)
        );
        for bare in ["v1,", "v1, v1,", "", "v2,abc"] {
            assert_eq!(
                verify(std::slice::from_ref(&key), &headers(bare, NOW), BODY, NOW),
                Err(Rejected::NoMatch),
                "{bare:?}"
            );
        }
        let mut missing = headers(&key.sign("msg_1", NOW, BODY), NOW);
        missing.remove("webhook-id");
        assert_eq!(
            verify(&[key], &missing, BODY, NOW),
            Err(Rejected::MissingHeader("webhook-id"))
        );
    }

    #[test]
    fn timestamps_beyond_five_minutes_either_way_are_refused() {
        let key = secret(b"current");
        for sent in [NOW - TOLERANCE_SECS - 1, NOW + TOLERANCE_SECS + 1] {
            let signed = headers(&key.sign("msg_1", sent, BODY), sent);
            assert_eq!(
                verify(std::slice::from_ref(&key), &signed, BODY, NOW),
                Err(Rejected::StaleTimestamp)
            );
        }
        let edge = NOW - TOLERANCE_SECS;
        let signed = headers(&key.sign("msg_1", edge, BODY), edge);
        assert_eq!(verify(&[key], &signed, BODY, NOW), Ok(()));
    }

    #[test]
    fn during_a_rotation_either_secret_and_any_listed_signature_matches() {
        let old = secret(b"old");
        let new = secret(b"new");
        let both = [old.clone(), new.clone()];
        let by_new = headers(&new.sign("msg_1", NOW, BODY), NOW);
        assert_eq!(verify(&both, &by_new, BODY, NOW), Ok(()));
        let listed = format!(
            "v1,{} {}",
            STANDARD.encode(b"garbage that is not a tag"),
            old.sign("msg_1", NOW, BODY)
        );
        assert_eq!(verify(&both, &headers(&listed, NOW), BODY, NOW), Ok(()));
        assert_eq!(
            verify(
                &[new],
                &headers(&old.sign("msg_1", NOW, BODY), NOW),
                BODY,
                NOW
            ),
            Err(Rejected::NoMatch)
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(Secret::parse("whsec_!!!").is_err());
        assert!(Secret::parse("whsec_").is_err());
        assert!(Secret::parse("whsec_c2VjcmV0").is_ok());
    }
}
