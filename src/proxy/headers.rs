//! Header hygiene between client, proxy and upstream (RFC 9110 section 7.6).
//!
//! Hop-by-hop fields describe one connection and must not cross the proxy; the
//! `x-flowgate-*` fields steer the fleet and must never be taken from a client; the
//! forwarding fields tell the origin who asked and through what.

use http::header::{CONNECTION, Entry, TE, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What every fleet field's name starts with.
pub(crate) const FLOWGATE_PREFIX: &[u8] = b"x-flowgate-";

// === The fleet's fields: only proxies set them ===

/// Which region made the response; on a probe answer, that a flowgate proxy made it.
pub(crate) static X_FLOWGATE_REGION: HeaderName = HeaderName::from_static("x-flowgate-region");
/// Why the proxy answered itself ([`super::error::ProxyError::code`]).
pub(crate) static X_FLOWGATE_ERROR: HeaderName = HeaderName::from_static("x-flowgate-error");
/// How many attempts the request took, when more than one.
pub(crate) static X_FLOWGATE_ATTEMPTS: HeaderName = HeaderName::from_static("x-flowgate-attempts");
/// How many proxies the request has crossed: a peer never forwards it past `max_hops`.
pub(crate) static X_FLOWGATE_HOPS: HeaderName = HeaderName::from_static("x-flowgate-hops");
/// The region where the request entered the fleet.
pub(crate) static X_FLOWGATE_SOURCE_REGION: HeaderName = HeaderName::from_static("x-flowgate-source-region");
/// Milliseconds the sender will still wait for this request: the receiver never waits
/// longer (a client that has given up is not served at the far end of the world).
pub(crate) static X_FLOWGATE_DEADLINE_MS: HeaderName = HeaderName::from_static("x-flowgate-deadline-ms");

/// The non-standard field names that cross every hop of the fleet: forwarding fields and
/// the fleet's own. `http` knows only the standard names and copies any other into a new
/// allocation (freed again with the map); these come back as the static names instead.
static KNOWN: [&HeaderName; 9] = [
    &X_FORWARDED_FOR,
    &X_FORWARDED_PROTO,
    &X_REQUEST_ID,
    &X_FLOWGATE_REGION,
    &X_FLOWGATE_ERROR,
    &X_FLOWGATE_ATTEMPTS,
    &X_FLOWGATE_HOPS,
    &X_FLOWGATE_SOURCE_REGION,
    &X_FLOWGATE_DEADLINE_MS,
];

/// A field name from the wire, as `HeaderName::from_bytes` would make it (lowercased;
/// invalid bytes refused), without an allocation for the names in [`KNOWN`].
pub(crate) fn field_name(raw: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    // Every known name starts `x-` and has at least 12 bytes: one test skips the search
    // for the standard names, which `from_bytes` matches without allocating.
    if raw.len() >= 12 && raw[1] == b'-' && raw[0] | 0x20 == b'x' {
        let known = KNOWN.iter().find(|n| spells(n.as_str().as_bytes(), raw));
        if let Some(n) = known {
            return Ok((*n).clone());
        }
    }
    HeaderName::from_bytes(raw)
}

/// Whether `raw` is `lower` (a name of letters, digits and `-`) in any case. Setting bit
/// 0x20 lowercases a letter; the only other bytes it maps onto a letter, digit or `-` are
/// control bytes, which the second test refuses. Without an early exit, so that it
/// compiles to a few wide operations rather than a loop of byte comparisons
/// (`eq_ignore_ascii_case` took about 200 instructions per name).
pub(crate) fn spells(lower: &[u8], raw: &[u8]) -> bool {
    lower.len() == raw.len()
        && raw.iter().zip(lower).fold(true, |ok, (&r, &l)| ok & (r | 0x20 == l) & (r > 0x20))
}

/// Longest client-supplied request id kept; a longer one is replaced so logs stay sane.
const MAX_REQUEST_ID: usize = 128;

/// Removes hop-by-hop fields: those named in `Connection` and the fixed list. When
/// `upgrade` is set (a protocol switch in progress) `Upgrade` and `Connection: upgrade`
/// survive, since the switch is itself hop-by-hop and must reach the next hop.
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // One pass of cheap name comparisons, then a hashed removal only for what is there:
    // most messages carry none of these fields, or `Connection: keep-alive` alone.
    // The `Connection` values are read in the same pass. Only a token outside the fixed
    // list names a field still to remove (nearly every `Connection` says `keep-alive` or
    // `close`), so the list stays unallocated.
    let (mut connection, mut fixed) = (false, false);
    let mut listed: Vec<HeaderName> = Vec::new();
    for (name, value) in h.iter() {
        if name == CONNECTION {
            connection = true;
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                    continue;
                }
                let Ok(name) = HeaderName::from_bytes(token.as_bytes()) else { continue };
                // Never let a client make us drop the fields we are about to set ourselves;
                // the fixed list (`upgrade` among it) is dealt with below.
                let ours = name == X_FORWARDED_FOR || name == X_REQUEST_ID || name == VIA;
                if !(ours || is_fixed_hop_by_hop(&name)) {
                    listed.push(name);
                }
            }
        } else if is_fixed_hop_by_hop(name) {
            fixed = true;
        }
    }
    if connection {
        for name in &listed {
            h.remove(name);
        }
        h.remove(&CONNECTION);
    }
    if fixed {
        h.remove(&KEEP_ALIVE);
        h.remove(&PROXY_CONNECTION);
        h.remove(&TRANSFER_ENCODING);
        if let Some(te) = h.remove(&TE) {
            // `TE: trailers` is how a gRPC client says it understands trailers; the origin
            // needs to see it, and HTTP/2 allows exactly this one value.
            if te.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))) {
                h.insert(&TE, HeaderValue::from_static("trailers"));
            }
        }
        if !upgrade {
            h.remove(&UPGRADE);
        }
    }
    if upgrade {
        h.insert(&CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The fields that are hop-by-hop whatever `Connection` says (RFC 9110 section 7.6.1).
fn is_fixed_hop_by_hop(n: &HeaderName) -> bool {
    n == TE || n == TRANSFER_ENCODING || n == UPGRADE || n == KEEP_ALIVE || n == PROXY_CONNECTION
}

/// Removes every `x-flowgate-*` field: only the fleet sets them.
pub fn strip_flowgate(h: &mut HeaderMap) {
    // Most requests carry none; find that out without allocating.
    if !h.keys().any(is_flowgate) {
        return;
    }
    let names: Vec<HeaderName> = h.keys().filter(|n| is_flowgate(n)).cloned().collect();
    for n in names {
        h.remove(&n);
    }
}

fn is_flowgate(n: &HeaderName) -> bool {
    n.as_str().as_bytes().starts_with(FLOWGATE_PREFIX)
}

/// What the proxy knows about the hop a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ClientHop<'a> {
    /// The client's address as a header value, made once per connection.
    pub client_ip: &'a HeaderValue,
    /// `http` or `https`.
    pub proto: &'static str,
    /// True on public listeners: forwarding fields from the client are not trusted.
    pub untrusted: bool,
    /// This proxy's `Via` entry for the client's protocol version.
    pub via: &'a HeaderValue,
}

/// This proxy's `Via` entries (`1.1 flowgate-REGION`), one per protocol version, made once
/// so the request path only clones them.
#[derive(Debug, Clone)]
pub struct ViaValues {
    v10: HeaderValue,
    v11: HeaderValue,
    v2: HeaderValue,
}

impl ViaValues {
    pub fn new(region: &str) -> Result<ViaValues, http::header::InvalidHeaderValue> {
        let make = |v: &str| HeaderValue::try_from(format!("{v} flowgate-{region}"));
        Ok(ViaValues { v10: make("1.0")?, v11: make("1.1")?, v2: make("2")? })
    }

    /// The entry for a request received over `version` (RFC 9110 section 7.6.3).
    pub fn for_version(&self, version: Version) -> &HeaderValue {
        match version {
            Version::HTTP_09 | Version::HTTP_10 => &self.v10,
            Version::HTTP_2 | Version::HTTP_3 => &self.v2,
            _ => &self.v11,
        }
    }
}

/// The client address as a header value; an IP address always is one.
pub fn ip_header(ip: std::net::IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Sets `x-forwarded-for`, `x-forwarded-proto`, `x-request-id` and `via` on a request
/// about to go upstream. Returns the request id, for logs.
pub fn add_forwarding(h: &mut HeaderMap, hop: &ClientHop<'_>) -> HeaderValue {
    // Room for the four fields at once: one growth of the map rather than one per insert.
    h.reserve(4);
    // Which of them the client sent, in one pass of name comparisons: a field it did not
    // send is appended (about 150 instructions less than a hashed entry and an insert).
    let (mut sent_for, mut sent_proto, mut sent_id) = (false, false, false);
    for name in h.keys() {
        // Told by length first: comparing a name the crate does not know is a `memcmp`.
        let name = name.as_str();
        match name.len() {
            15 => sent_for |= name == X_FORWARDED_FOR.as_str(),
            17 => sent_proto |= name == X_FORWARDED_PROTO.as_str(),
            12 => sent_id |= name == X_REQUEST_ID.as_str(),
            _ => {}
        }
    }
    let proto = HeaderValue::from_static(hop.proto);
    if !(sent_for || sent_proto || sent_id) {
        h.append(&X_FORWARDED_FOR, hop.client_ip.clone());
        h.append(&X_FORWARDED_PROTO, proto);
        let id = new_request_id();
        h.append(&X_REQUEST_ID, id.clone());
        h.append(&VIA, hop.via.clone());
        return id;
    }
    // One hashed look-up per field: the entry both reads what the client sent and sets ours.
    match h.entry(&X_FORWARDED_FOR) {
        Entry::Occupied(mut e) => {
            let joined = match e.get().to_str() {
                Ok(prev) if !prev.trim().is_empty() => {
                    // Joined in one buffer the value then shares: `format!` costs about
                    // a thousand instructions more on every request from a peer.
                    let ip = hop.client_ip.as_bytes();
                    let mut joined = bytes::BytesMut::with_capacity(prev.len() + 2 + ip.len());
                    joined.extend_from_slice(prev.as_bytes());
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(ip);
                    HeaderValue::from_maybe_shared(joined.freeze()).ok()
                }
                _ => Some(hop.client_ip.clone()),
            };
            if let Some(v) = joined {
                e.insert(v);
            }
        }
        Entry::Vacant(e) => {
            e.insert(hop.client_ip.clone());
        }
    }
    match h.entry(&X_FORWARDED_PROTO) {
        Entry::Occupied(mut e) if hop.untrusted => {
            e.insert(proto);
        }
        Entry::Occupied(_) => {}
        Entry::Vacant(e) => {
            e.insert(proto);
        }
    }
    let id = match h.entry(&X_REQUEST_ID) {
        Entry::Occupied(e) if usable_request_id(e.get()) => e.get().clone(),
        Entry::Occupied(mut e) => {
            let id = new_request_id();
            e.insert(id.clone());
            id
        }
        Entry::Vacant(e) => e.insert(new_request_id()).clone(),
    };
    h.append(&VIA, hop.via.clone());
    id
}

/// A client's request id is kept when it is short, printable and not empty.
fn usable_request_id(v: &HeaderValue) -> bool {
    !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.to_str().is_ok()
}

/// 128 random bits in hex: unique enough to join logs across the fleet.
pub(crate) fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut buf = [0u8; 32];
    // Byte by byte, most significant first: two digits each, without a 128-bit shift per
    // digit.
    for (pair, byte) in buf.chunks_exact_mut(2).zip(n.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    // Hex digits are always a valid header value.
    let mut id = HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"));
    // Unique per request, so an HTTP/2 peer link's HPACK table gains nothing from it:
    // indexing it would only evict the fields that do repeat (`via`, the fleet fields).
    id.set_sensitive(true);
    id
}

/// Whether a request asks to switch protocols (WebSocket and friends, HTTP/1.1 only).
pub(crate) fn is_upgrade_request(version: Version, h: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && h.contains_key(&UPGRADE)
        && h.get_all(&CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests;
