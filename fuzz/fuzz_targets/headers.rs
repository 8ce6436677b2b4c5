//! Header hygiene on the request path: whatever fields a client sends (one `name: value`
//! a line), after stripping no hop-by-hop or `x-flowgate-*` field may remain, and the
//! forwarding fields the proxy adds are always present and valid.
#![no_main]

use flowgate::proxy::headers::{self, ClientHop};
use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let upgrade = flags & 1 == 1;
    let untrusted = flags & 2 == 2;
    let mut h = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        h.append(name, value);
    }
    let listed: Vec<String> = h
        .get_all(&CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();

    headers::strip_hop_by_hop(&mut h, upgrade);
    headers::strip_flowgate(&mut h);

    for name in ["keep-alive", "proxy-connection"] {
        assert!(!h.contains_key(name), "{name} survived");
    }
    assert!(!h.contains_key(&TRANSFER_ENCODING), "transfer-encoding survived");
    assert!(h.get_all(&TE).iter().all(|v| v == "trailers"), "te other than trailers survived");
    assert!(h.keys().all(|n| !n.as_str().starts_with("x-flowgate-")), "an x-flowgate field survived");
    if upgrade {
        assert_eq!(h.get_all(&CONNECTION).iter().collect::<Vec<_>>(), ["upgrade"]);
    } else {
        assert!(!h.contains_key(&CONNECTION) && !h.contains_key(&UPGRADE), "connection or upgrade survived");
    }
    for name in &listed {
        let kept = ["x-forwarded-for", "x-request-id", "via", "te", "connection", "upgrade"];
        if !kept.contains(&name.as_str()) {
            assert!(!h.contains_key(name.as_str()), "{name} was listed in connection but survived");
        }
    }

    let ip = HeaderValue::from_static("192.0.2.7");
    let via = HeaderValue::from_static("1.1 flowgate-fuzz");
    let hop = ClientHop { client_ip: &ip, proto: "http", untrusted, via: &via };
    let id = headers::add_forwarding(&mut h, &hop);
    assert!(!id.is_empty() && id.len() <= 128 && id.to_str().is_ok(), "bad request id {id:?}");
    assert_eq!(h.get("x-request-id"), Some(&id));
    assert!(h.get_all(&VIA).iter().any(|v| v == via), "via missing");
    let xff = h.get("x-forwarded-for").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(xff.ends_with("192.0.2.7"), "x-forwarded-for does not end with the client: {xff:?}");
    if untrusted {
        assert_eq!(h.get("x-forwarded-proto").map(|v| v.as_bytes()), Some(&b"http"[..]));
    }
});
