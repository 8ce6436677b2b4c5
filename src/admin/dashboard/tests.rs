use std::collections::BTreeMap;

use super::format::{duration, pct, rate};
use super::*;
use crate::table::PeerMode;
use crate::wire::{EndpointCounts, TargetStatus};

fn status() -> Status {
    let mut targets = BTreeMap::new();
    targets.insert(
        "us-east-1".to_owned(),
        TargetStatus {
            local: true,
            healthy: true,
            share: 0.6,
            mode: None,
            bypass_active: false,
            path: None,
            endpoints: BTreeMap::from([(
                "origin".to_owned(),
                EndpointCounts { healthy: 1, usable: 1, total: 1 },
            )]),
            figures: Default::default(),
            reported: None,
            outlier_share: 1.0,
        },
    );
    targets.insert(
        "us-west-2".to_owned(),
        TargetStatus {
            local: false,
            healthy: false,
            share: 0.4,
            mode: Some(PeerMode::Auto),
            bypass_active: true,
            path: Some("proxies".to_owned()),
            endpoints: BTreeMap::new(),
            figures: Default::default(),
            reported: None,
            outlier_share: 1.0,
        },
    );
    Status {
        region: "us-east-1".to_owned(),
        table_version: 42,
        table_digest: "d1".to_owned(),
        table_conflicts: Vec::new(),
        table_note: Some("evacuate <b>us-east-1</b> & \"more\"".to_owned()),
        ready: true,
        state: "ready".to_owned(),
        store: crate::wire::StoreState::None,
        rps: 12.5,
        error_ratio: 0.02,
        source_rps: 3.0,
        window_seconds: WINDOW_SECONDS,
        inflight_requests: 2,
        uptime_seconds: 3725,
        targets,
        origins: BTreeMap::new(),
    }
}

#[test]
fn renders_the_state_and_escapes_everything() {
    let history = vec![HistoryEntry {
        version: 42,
        applied_at: "2026-01-01T00:00:00Z".to_owned(),
        note: Some("<script>alert(1)</script>".to_owned()),
        who: "o'brien".to_owned(),
        table: None,
    }];
    let page = render(&status(), &history, 3600 * 25 + 61);
    assert!(page.contains(r#"<span id="region">us-east-1</span>"#));
    assert!(page.contains(r#"<b id="version">42</b>"#));
    assert!(page.contains(r#"id="share-us-east-1" data-region="us-east-1" data-share="0.6">60%</td>"#));
    assert!(page.contains(r#"id="share-us-west-2" data-region="us-west-2" data-share="0.4">40%</td>"#));
    assert!(page.contains("evacuate &lt;b&gt;us-east-1&lt;/b&gt; &amp; &quot;more&quot;"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("o&#39;brien"));
    assert!(!page.contains("<script>alert"));
    assert!(page.contains(r#"<span class="badge bad">down</span>"#));
    assert!(page.contains(r#"<span class="badge warn">active</span>"#));
    assert!(page.contains("snapshot 01:01:01 UTC"));
    assert!(page.contains(r#"<b id="error-ratio" class="bad">2.00%</b>"#));
    assert!(page.contains("1h 2m"));
    // One script, and it is the one the policy allows.
    assert_eq!(page.matches("<script>").count(), 1);
    assert!(page.contains(&format!("<script>{JS}</script>")));
    assert!(page.len() < 200 * 1024, "{} bytes", page.len());
}

#[test]
fn the_policy_allows_only_the_page_script_and_this_origin() {
    let csp = content_security_policy();
    assert!(csp.starts_with("default-src 'none'; connect-src 'self'; script-src 'sha256-"));
    let hash = csp.split("'sha256-").nth(1).and_then(|s| s.split('\'').next()).expect("hash");
    assert_eq!(hash.len(), 44);
    assert!(hash.ends_with('='));
}

/// A CSP source hash is standard, padded base64 (not the URL-safe alphabet, not unpadded).
#[test]
fn base64_matches_the_rfc_examples() {
    for (input, out) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(B64.encode(input.as_bytes()), out);
    }
}

#[test]
fn numbers_read_like_the_script_writes_them() {
    assert_eq!(pct(1.0 / 3.0), "33.3%");
    assert_eq!(pct(0.6), "60%");
    assert_eq!(pct(0.0), "0%");
    assert_eq!(rate(3.24), "3.2");
    assert_eq!(rate(1234.4), "1234");
    assert_eq!(duration(59), "59s");
    assert_eq!(duration(86400 * 2 + 3600), "2d 1h");
}
