//! The access log: one line per request with method, path, status and latency. The query
//! string is logged with its secrets masked: callback tokens (`?token=`, the only credential
//! of a Cog or simulator callback) and URL signatures are credentials, and logs travel further
//! than the service.
use actix_web::dev::ServiceRequest;
use actix_web::middleware::Logger;

/// Query parameters whose values are never logged: exact names, and any name containing
/// one of `SECRET_PARTS`.
const SECRET_PARTS: &[&str] = &["token", "signature", "secret", "key", "password", "auth"];

pub fn middleware() -> Logger {
    Logger::new("%{request}xi %s %Dms")
        .custom_request_replace("request", request_line)
        .log_target("atelier::http")
}

/// `GET /path?query HTTP/1.1`, as `%r` would print it, with secret query values masked.
fn request_line(request: &ServiceRequest) -> String {
    let query = request.query_string();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", redact_query(query))
    };
    format!(
        "{} {}{query} {:?}",
        request.method(),
        redact_path(request.path()),
        request.version()
    )
}

/// Paths that carry a credential: the simulator's result URLs end in their token.
const SECRET_PATH_PREFIXES: &[&str] = &["/simulator/v1/results/"];

/// The path with any credential it carries masked.
fn redact_path(path: &str) -> String {
    for prefix in SECRET_PATH_PREFIXES {
        if let Some(rest) = path.strip_prefix(prefix)
            && let Some((id, _token)) = rest.split_once('/')
        {
            return format!("{prefix}{id}/[redacted]");
        }
    }
    path.to_owned()
}

/// The query with the value of every secret-looking parameter replaced by `[redacted]`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => format!("{name}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARTS.iter().any(|part| name.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_paths_are_masked() {
        assert_eq!(
            redact_path("/simulator/v1/results/0196/tok_abc"),
            "/simulator/v1/results/0196/[redacted]"
        );
        assert_eq!(redact_path("/v1/generations/0196"), "/v1/generations/0196");
    }

    #[test]
    fn secret_query_values_are_masked_and_the_rest_kept() {
        assert_eq!(redact_query("token=cb_123&x=1"), "token=[redacted]&x=1");
        assert_eq!(
            redact_query("expires=99&signature=abcd"),
            "expires=99&signature=[redacted]"
        );
        assert_eq!(
            redact_query("api_key=k&Access_Token=t&limit=5&flag"),
            "api_key=[redacted]&Access_Token=[redacted]&limit=5&flag"
        );
    }
}
