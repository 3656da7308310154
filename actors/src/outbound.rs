//! The outgoing-fetch policy: one way to fetch anything a client or a provider pointed us at
//! (input URLs, results). Only public addresses (`crate::net::is_public`) are reached, checked
//! on the addresses actually connected to: a resolver that resolves, then drops what is not
//! public, so a DNS answer cannot be swapped in after a check. IP-literal URLs, which skip the
//! resolver, are checked on every request and every redirect. Proxies from the environment
//! (`HTTP_PROXY`, ...) are ignored: a proxy would connect for us, past the check. Hosts the
//! operator allows (`outbound.allowed_hosts`, a provider's own base URL) are exempt.
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::net::is_public;

/// Redirects followed at most, each checked like the first URL.
const MAX_REDIRECTS: usize = 5;

/// Why a fetch was refused: it would have reached an address that is not public.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotPublic(pub String);

/// Host names (or IP literals) exempt from the address check, compared case-insensitively.
#[derive(Debug, Default)]
struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    fn allows(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let literal = host.parse::<IpAddr>().ok();
        self.0.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(host)
                || literal.is_some_and(|ip| allowed.parse::<IpAddr>() == Ok(ip))
        })
    }

    /// `Ok` when `url` may be requested as far as its literal host says; host names are
    /// checked by the resolver when connecting.
    fn check(&self, url: &url::Url) -> Result<(), NotPublic> {
        let address = match url.host() {
            Some(url::Host::Domain(_)) => return Ok(()),
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            None => return Err(NotPublic(format!("{url} names no host"))),
        };
        if is_public(address) || self.allows(&address.to_string()) {
            return Ok(());
        }
        Err(NotPublic(format!("{address} is not a public address")))
    }
}

/// Resolves, then keeps only the public addresses (all of them for an allowed host).
struct PublicOnly(Arc<AllowedHosts>);

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allowed.allows(&host) {
                return Ok(Box::new(addresses.into_iter()) as Addrs);
            }
            let public: Vec<SocketAddr> = addresses
                .iter()
                .copied()
                .filter(|address| is_public(address.ip()))
                .collect();
            if public.is_empty() {
                let found: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(NotPublic(format!(
                    "{host} resolves to {} which is not public",
                    found.join(", ")
                ))) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client that fetches under the policy.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    allowed: Arc<AllowedHosts>,
}

impl Fetcher {
    /// A client that may reach public addresses, and `allowed_hosts` wherever they are.
    pub fn new(allowed_hosts: impl IntoIterator<Item = String>) -> Result<Self, reqwest::Error> {
        let allowed = Arc::new(AllowedHosts(allowed_hosts.into_iter().collect()));
        let for_redirects = allowed.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(NotPublic(format!("more than {MAX_REDIRECTS} redirects")));
            }
            match for_redirects.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        });
        Self::build(allowed, redirects, Duration::from_secs(10))
    }

    /// As `new`, for sending rather than fetching (customer webhooks): no redirect is
    /// followed (a 3xx is the destination's answer), and connecting waits `connect_timeout`.
    pub fn without_redirects(
        allowed_hosts: impl IntoIterator<Item = String>,
        connect_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let allowed = Arc::new(AllowedHosts(allowed_hosts.into_iter().collect()));
        Self::build(allowed, reqwest::redirect::Policy::none(), connect_timeout)
    }

    fn build(
        allowed: Arc<AllowedHosts>,
        redirects: reqwest::redirect::Policy,
        connect_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly(allowed.clone())))
            .redirect(redirects)
            .no_proxy()
            .connect_timeout(connect_timeout)
            .build()?;
        Ok(Self { client, allowed })
    }

    /// A GET for `url`, or why it may not be fetched. The caller sets the timeout.
    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, NotPublic> {
        Ok(self.client.get(self.checked(url)?))
    }

    /// A POST to `url`, or why it may not be sent. The caller sets the timeout.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, NotPublic> {
        Ok(self.client.post(self.checked(url)?))
    }

    fn checked(&self, url: &str) -> Result<url::Url, NotPublic> {
        let parsed = url::Url::parse(url).map_err(|_| NotPublic(format!("{url} is not a URL")))?;
        self.allowed.check(&parsed)?;
        Ok(parsed)
    }

    /// Whether `host` is exempt from the policy.
    pub fn allows(&self, host: &str) -> bool {
        self.allowed.allows(host)
    }

    /// `Ok` when `url`'s literal host may be reached (names are judged when connecting).
    pub fn check(&self, url: &url::Url) -> Result<(), NotPublic> {
        self.allowed.check(url)
    }
}

/// The policy's refusal inside a failed request (at connect time or on a redirect), if that
/// is why it failed.
pub fn refusal(error: &reqwest::Error) -> Option<&NotPublic> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<NotPublic>() {
            return Some(refused);
        }
        source = error.source();
    }
    None
}

/// The host of `url` (without brackets), for allowing a provider's own base URL.
pub fn host_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A listener that answers every connection with `response`, and counts them.
    fn serve(response: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        (format!("127.0.0.1:{port}"), seen)
    }

    fn ok() -> String {
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()
    }

    async fn fetch(fetcher: &Fetcher, url: &str) -> Result<reqwest::Response, String> {
        let request = fetcher.get(url).map_err(|refused| refused.to_string())?;
        let sent = request.timeout(Duration::from_secs(5)).send().await;
        sent.map_err(|error| match refusal(&error) {
            Some(refused) => format!("refused: {refused}"),
            None => format!("failed: {error}"),
        })
    }

    #[tokio::test]
    async fn private_addresses_are_refused_literal_or_resolved() {
        let (address, seen) = serve(ok());
        let port = address.rsplit(':').next().unwrap();
        let fetcher = Fetcher::new([]).unwrap();
        let literal = fetch(&fetcher, &format!("http://{address}/")).await;
        assert!(literal.unwrap_err().contains("not a public address"));
        // localhost resolves to 127.0.0.1: refused when connecting.
        let resolved = fetch(&fetcher, &format!("http://localhost:{port}/")).await;
        let error = resolved.unwrap_err();
        assert!(
            error.starts_with("refused:") && error.contains("not public"),
            "{error}"
        );
        let mapped = fetch(&fetcher, &format!("http://[::ffff:127.0.0.1]:{port}/")).await;
        assert!(mapped.is_err());
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Allowed by name or by address, it is fetched.
        for allowed in ["localhost", "127.0.0.1"] {
            let fetcher = Fetcher::new([allowed.to_owned()]).unwrap();
            let host = if allowed == "localhost" {
                "localhost"
            } else {
                "127.0.0.1"
            };
            let response = fetch(&fetcher, &format!("http://{host}:{port}/"))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }

    #[tokio::test]
    async fn a_redirect_to_a_private_address_is_refused() {
        let (target, seen) = serve(ok());
        let (redirector, _) = serve(format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{target}/secret\r\ncontent-length: 0\r\n\
             connection: close\r\n\r\n"
        ));
        let port = redirector.rsplit(':').next().unwrap();
        // The redirecting host is allowed (a provider's own server); where it points is not.
        let fetcher = Fetcher::new(["localhost".to_owned()]).unwrap();
        let error = fetch(&fetcher, &format!("http://localhost:{port}/result.png"))
            .await
            .unwrap_err();
        assert!(
            error.contains("refused: 127.0.0.1 is not a public address"),
            "{error}"
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// Run by `proxies_from_the_environment_are_ignored` in a child process with `HTTP_PROXY`
    /// set (setting it here would affect the other tests).
    #[tokio::test]
    #[ignore = "run by proxies_from_the_environment_are_ignored"]
    async fn fetch_with_a_proxy_in_the_environment() {
        let url = std::env::var("ATELIER_PROXY_TEST_URL").unwrap();
        let fetcher = Fetcher::new(["127.0.0.1".to_owned()]).unwrap();
        let response = fetch(&fetcher, &url).await.unwrap();
        assert_eq!(response.status(), 200);
    }

    #[test]
    fn proxies_from_the_environment_are_ignored() {
        let (proxy, proxied) = serve(ok());
        let (target, reached) = serve(ok());
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "--ignored", "--nocapture"])
            .arg("outbound::tests::fetch_with_a_proxy_in_the_environment")
            .env("ATELIER_PROXY_TEST_URL", format!("http://{target}/"))
            .env("HTTP_PROXY", format!("http://{proxy}"))
            .env("http_proxy", format!("http://{proxy}"))
            .env("ALL_PROXY", format!("http://{proxy}"))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            proxied.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "went through the proxy"
        );
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn hosts_of_base_urls() {
        assert_eq!(
            host_of("http://cog.internal:5000/x").as_deref(),
            Some("cog.internal")
        );
        assert_eq!(host_of("http://[fd00::1]:5000").as_deref(), Some("fd00::1"));
        assert_eq!(host_of("not a url"), None);
    }
}
