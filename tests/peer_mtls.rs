//! Two regions linked over mutual TLS: forwarding and failover work as over plain links,
//! and a client without a certificate signed by the fleet's CA cannot use the peer
//! listener.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::admin::wait_probed_and_healthy;
use support::{ProxyConfig, get, h1_client, origin};

struct Pki {
    dir: tempfile::TempDir,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

fn pki(regions: &[&str]) -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
    for r in regions {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("leaf");
        std::fs::write(dir.path().join(format!("{r}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.path().join(format!("{r}-key.pem")), key.serialize_pem()).expect("write");
    }
    Pki { ca_der: ca.der().clone(), dir }
}

async fn reserve() -> SocketAddr {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr")
}

fn config(
    me: &str,
    other: &str,
    dir: &Path,
    my_port: SocketAddr,
    other_port: SocketAddr,
    origin: SocketAddr,
) -> ProxyConfig {
    let d = dir.display();
    ProxyConfig::new(me, origin)
        .top(&format!("table = \"{d}/{me}-table.json\""))
        .peer_listen(None::<SocketAddr>)
        .listen_line(&format!("peer_tls = \"{my_port}\""))
        .listen_line(&format!("peer_tls_cert = \"{d}/{me}.pem\""))
        .listen_line(&format!("peer_tls_key = \"{d}/{me}-key.pem\""))
        .listen_line(&format!("peer_tls_ca = \"{d}/ca.pem\""))
        .peer_with(
            other,
            &[other_port],
            &format!(
                "tls = true\nca = \"{d}/ca.pem\"\nclient_cert = \"{d}/{me}.pem\"\n\
                 client_key = \"{d}/{me}-key.pem\"\nserver_name = \"localhost\""
            ),
        )
        .health("200ms", "150ms")
}

#[tokio::test]
async fn regions_forward_and_fail_over_over_mutual_tls() {
    let pki = pki(&["us-east-1", "us-west-2"]);
    let dir = pki.dir.path();
    let table = r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 100}}}"#;
    std::fs::write(dir.join("us-east-1-table.json"), table).expect("table");
    std::fs::write(dir.join("us-west-2-table.json"), table).expect("table");
    let (oa, ob) = (origin::start().await, origin::start().await);
    let (pa, pb) = (reserve().await, reserve().await);
    let a = config("us-east-1", "us-west-2", dir, pa, pb, oa.addr).start_in(dir, "a").await;
    let b = config("us-west-2", "us-east-1", dir, pb, pa, ob.addr).start_in(dir, "b").await;
    assert_eq!(b.addrs.peer_tls, Some(pb));
    wait_probed_and_healthy(&[a.addrs.admin, b.addrs.admin], Duration::from_secs(10)).await;

    let client = h1_client();
    for _ in 0..20 {
        let (status, headers, body) = get(&client, &a.url("/headers")).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(headers["x-flowgate-region"], "us-west-2", "forwarded over the mTLS link");
        let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(seen["x-flowgate-hops"], "1");
        assert_eq!(seen["x-forwarded-proto"], "http", "the client's protocol, kept across the hop");
    }

    // A client that trusts the CA but has no certificate of its own gets nowhere.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).expect("root");
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(pb).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let refused = match tokio::time::timeout(Duration::from_secs(3), connector.connect(name, tcp)).await {
        Ok(Err(_)) | Err(_) => true,
        Ok(Ok(mut tls)) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // TLS 1.3 reports a missing client certificate after the handshake.
            let _ = tls.write_all(b"GET /.flowgate/health HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let mut buf = [0u8; 64];
            !matches!(tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await, Ok(Ok(n)) if n > 0)
        }
    };
    assert!(refused, "a client without a certificate must not be served by the peer listener");
    assert_eq!(
        ob.hits.load(std::sync::atomic::Ordering::SeqCst),
        20,
        "only the 20 forwarded requests reached B"
    );

    // Fail over: B goes away, A serves its own traffic.
    b.stop().await;
    let mut served_by_a = 0;
    for _ in 0..20 {
        let (status, headers, _) = get(&client, &a.url("/")).await;
        assert_eq!(status, 200);
        if headers["x-flowgate-region"] == "us-east-1" {
            served_by_a += 1;
        }
    }
    assert_eq!(served_by_a, 20, "with B gone every request is served in A");
    a.stop().await;
}
