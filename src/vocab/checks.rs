//! What a well-formed name, address, host pattern and key look like: checked by the config,
//! the table, the fleet file and the request path alike.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Region and origin names go into headers, metric labels and URLs: keep them plain.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err("only lowercase letters, digits, `-` and `_` are allowed");
    }
    Ok(())
}

/// `host:port`, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
pub(crate) fn check_host_port(s: &str) -> Result<(), &'static str> {
    let authority: http::uri::Authority = s.parse().map_err(|_| "not a valid host:port")?;
    if authority.as_str().contains('@') {
        return Err("user info is not allowed");
    }
    match authority.port_u16() {
        Some(0) => Err("port must not be 0"),
        Some(_) if !authority.host().is_empty() => Ok(()),
        Some(_) => Err("host is empty"),
        None => Err("missing port (host:port)"),
    }
}

pub(crate) fn check_host_pattern(host: &str) -> Result<(), String> {
    if host == "*" {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.contains('*') {
        return Err(format!("{host:?}: use an exact host, `*.suffix` or `*`"));
    }
    if !name.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || b == b'-'
            || b == b'.'
            || b == b'_'
            || b == b':'
            || b == b'['
            || b == b']'
    }) {
        return Err(format!("{host:?}: not a valid host name"));
    }
    Ok(())
}

/// A public key as written in `[admin] table_keys`: base64 of 32 bytes (Ed25519).
pub(crate) fn check_public_key(key: &str) -> Result<(), String> {
    match B64.decode(key.trim()) {
        Ok(k) if k.len() == 32 => Ok(()),
        Ok(k) => Err(format!("an Ed25519 public key is 32 bytes, this one {}", k.len())),
        Err(e) => Err(format!("not base64: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_rules() {
        assert!(check_host_port("10.0.0.1:9000").is_ok());
        assert!(check_host_port("api.internal:9000").is_ok());
        assert!(check_host_port("[::1]:80").is_ok());
        assert_eq!(check_host_port("api.internal"), Err("missing port (host:port)"));
        assert!(check_host_port("a b:1").is_err());
        assert_eq!(check_host_port("x:0"), Err("port must not be 0"));
    }

    #[test]
    fn names_are_plain() {
        assert!(check_name("us-east-1").is_ok());
        assert!(check_name("US").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn host_patterns() {
        assert!(check_host_pattern("*").is_ok());
        assert!(check_host_pattern("*.example.com").is_ok());
        assert!(check_host_pattern("api.example.com").is_ok());
        assert!(check_host_pattern("a.*.com").is_err());
        assert!(check_host_pattern("*.").is_err());
    }

    #[test]
    fn public_keys_are_32_bytes_of_base64() {
        assert!(check_public_key("abc").is_err());
        assert!(check_public_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
    }
}
