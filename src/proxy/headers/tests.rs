//! Header hygiene: the hop-by-hop fields, the fleet's own, the forwarding fields.

use super::*;

#[test]
fn field_names_read_as_http_reads_them_known_or_not() {
    for raw in
        ["X-Forwarded-For", "x-request-id", "X-FLOWGATE-HOPS", "x-flowgate-region", "host", "x-custom-1"]
    {
        let ours = field_name(raw.as_bytes()).unwrap();
        assert_eq!(ours, HeaderName::from_bytes(raw.as_bytes()).unwrap(), "{raw}");
        assert_eq!(ours.as_str(), raw.to_ascii_lowercase());
    }
    // A known name's length with a byte no name may hold is still refused.
    assert!(field_name(b"x-request-i\x01").is_err());
    assert!(field_name(b"x-forwarded fo").is_err());
    assert!(field_name(b"").is_err());
    // Bytes that setting bit 0x20 would turn into `-` or a digit are not the name.
    assert!(field_name(b"x\rrequest-id").is_err());
    assert!(field_name(b"x-flowgate-hops").is_ok_and(|n| n == X_FLOWGATE_HOPS));
    assert!(!spells(b"x-flowgate-hop1", b"X-FLOWGATE-HOP\x11"));
    assert!(spells(b"x-flowgate-hop1", b"X-FLOWGATE-HOP1"));
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn hop_by_hop_removed() {
    let mut h = map(&[
        ("connection", "keep-alive, x-secret"),
        ("keep-alive", "timeout=5"),
        ("x-secret", "1"),
        ("te", "gzip"),
        ("upgrade", "websocket"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("x-keep", "yes"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h["x-keep"], "yes");
}

#[test]
fn te_trailers_and_upgrade_survive_when_meant() {
    let mut h = map(&[("te", "trailers"), ("connection", "Upgrade"), ("upgrade", "websocket")]);
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
}

#[test]
fn connection_cannot_remove_forwarding_fields() {
    let mut h = map(&[("connection", "x-forwarded-for, via"), ("x-forwarded-for", "1.2.3.4")]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h["x-forwarded-for"], "1.2.3.4");
}

#[test]
fn flowgate_fields_stripped() {
    let mut h = map(&[("x-flowgate-hops", "0"), ("X-Flowgate-Source-Region", "x"), ("x-other", "1")]);
    strip_flowgate(&mut h);
    assert_eq!(h.len(), 1);
}

#[test]
fn forwarding_fields() {
    let mut h = map(&[("x-forwarded-for", "9.9.9.9"), ("x-forwarded-proto", "https"), ("via", "1.1 lb")]);
    let via = ViaValues::new("us-east-1").unwrap();
    let ip = ip_header("127.0.0.1".parse().unwrap());
    let hop =
        ClientHop { client_ip: &ip, proto: "http", untrusted: true, via: via.for_version(Version::HTTP_11) };
    assert_eq!(via.for_version(Version::HTTP_2), "2 flowgate-us-east-1");
    let id = add_forwarding(&mut h, &hop);
    assert_eq!(h["x-forwarded-for"], "9.9.9.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-request-id"], id);
    assert_eq!(id.len(), 32);
    let via: Vec<_> = h.get_all("via").iter().collect();
    assert_eq!(via, ["1.1 lb", "1.1 flowgate-us-east-1"]);
    let mut h2 = map(&[("x-request-id", "abc")]);
    assert_eq!(add_forwarding(&mut h2, &hop), "abc");
    let mut fresh = map(&[("host", "a")]);
    let id = add_forwarding(&mut fresh, &hop);
    let got: Vec<_> = fresh.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
    assert_eq!(
        got[1..],
        [
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", id.to_str().unwrap()),
            ("via", "1.1 flowgate-us-east-1")
        ]
    );
}
