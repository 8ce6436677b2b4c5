//! Several regions on loopback: per region an origin, one or more flowgate proxies
//! (in-process, the real `Server`) sharing it and, optionally, a fake load balancer in
//! front of its peer listener that can be told to misbehave.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::TestProxy;
use super::admin::wait_probed_and_healthy;
use super::config::ProxyConfig;
use super::origin::{self, Origin};

/// What the fake load balancer does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LbMode {
    /// Forward to the region's proxies.
    Pass = 0,
    /// Answer every other request 503 itself (no `x-flowgate-region`).
    HalfFail = 1,
    /// Forward after an extra 500 ms.
    Slow = 2,
}

/// A load balancer in front of one region's peer listeners (HTTP/1.1 and h2c in, h2c out).
pub struct FakeLb {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Requests received (health probes included).
    pub seen: Arc<AtomicUsize>,
}

impl FakeLb {
    pub async fn start(backend: SocketAddr) -> FakeLb {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind lb");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(LbMode::Pass as u8));
        let seen = Arc::new(AtomicUsize::new(0));
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).http2_only(true).build_http();
        let (mode2, seen2) = (mode.clone(), seen.clone());
        tokio::spawn(async move {
            let flip = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (client, mode, seen, flip) = (client.clone(), mode2.clone(), seen2.clone(), flip.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |mut req: Request<Incoming>| {
                        let (client, mode, seen, flip) =
                            (client.clone(), mode.clone(), seen.clone(), flip.clone());
                        async move {
                            seen.fetch_add(1, Ordering::SeqCst);
                            let m = mode.load(Ordering::SeqCst);
                            if m == LbMode::HalfFail as u8 && flip.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                                let mut r = Response::new(full("lb overloaded"));
                                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                return Ok::<_, std::convert::Infallible>(r);
                            }
                            if m == LbMode::Slow as u8 {
                                // A load balancer that answers late: the slowness is what tests set.
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                            let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
                            *req.uri_mut() = format!("http://{backend}{pq}").parse().expect("uri");
                            *req.version_mut() = http::Version::HTTP_2;
                            req.headers_mut().remove("connection");
                            match client.request(req).await {
                                Ok(resp) => Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed())),
                                Err(_) => {
                                    let mut r = Response::new(full("lb: backend failed"));
                                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                                    Ok(r)
                                }
                            }
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeLb { addr, mode, seen }
    }

    pub fn set_mode(&self, m: LbMode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn full(s: &'static str) -> BoxBody<Bytes, BoxError> {
    Full::new(Bytes::from_static(s.as_bytes())).map_err(|e| match e {}).boxed()
}

/// How to build a fleet.
pub struct FleetSpec<'a> {
    /// Region names; the first is usually the one under test.
    pub regions: &'a [&'a str],
    /// The traffic table JSON every proxy starts with (`None`: everything local).
    pub table: Option<&'a str>,
    /// Put a fake load balancer in front of every region's peer listener and list it as
    /// the region's `lb`.
    pub lbs: bool,
    /// TOML appended to every proxy's config (must not repeat a table the fleet writes:
    /// `[listen]`, `[admin]`, `[origins.api]`, `[peers.*]`, `[drain]`, `[health]`).
    pub extra: &'a str,
    /// `max_concurrency` of every region's `api` origin.
    pub max_concurrency: usize,
    /// `[health]` interval (timeout is half of it).
    pub health_interval: Duration,
    /// Proxies per region (all in front of the region's one origin); every other region
    /// lists all of their peer listeners as its `proxies`. The fake load balancer, when
    /// asked for, forwards to the first one.
    pub proxies_per_region: usize,
    /// TOML lines appended inside every proxy's `[admin]` table (e.g. `token_file = ...`).
    pub admin_extra: &'a str,
}

impl Default for FleetSpec<'_> {
    fn default() -> Self {
        FleetSpec {
            regions: &["us-east-1", "us-west-2", "eu-west-1"],
            table: None,
            lbs: false,
            extra: "",
            max_concurrency: 2000,
            health_interval: Duration::from_millis(200),
            proxies_per_region: 1,
            admin_extra: "",
        }
    }
}

/// One region of a test fleet.
pub struct Region {
    pub name: String,
    pub origin: Origin,
    pub proxy: TestProxy,
    pub lb: Option<FakeLb>,
    /// The peer listener address every other region uses for it.
    pub peer_addr: SocketAddr,
    /// The region's proxies after the first (`FleetSpec::proxies_per_region`).
    pub more: Vec<TestProxy>,
    /// Every proxy's peer listener, the first proxy's first.
    pub peer_addrs: Vec<SocketAddr>,
}

impl Region {
    /// Every proxy of the region, the first one first.
    pub fn proxies(&self) -> impl Iterator<Item = &TestProxy> {
        std::iter::once(&self.proxy).chain(self.more.iter())
    }
}

pub struct Fleet {
    pub regions: Vec<Region>,
    /// Every proxy's `[health] interval`.
    pub health_interval: Duration,
    _dir: tempfile::TempDir,
}

impl Fleet {
    pub async fn start(spec: FleetSpec<'_>) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let table_path = dir.path().join("table.json");
        if let Some(t) = spec.table {
            std::fs::write(&table_path, t).expect("write table");
        }
        let mut origins = Vec::new();
        let mut peer_addrs = Vec::new();
        let mut lbs = Vec::new();
        for _ in spec.regions {
            origins.push(origin::start().await);
            let mut peers = Vec::new();
            for _ in 0..spec.proxies_per_region.max(1) {
                peers.push(super::config::free_addr());
            }
            lbs.push(if spec.lbs { Some(FakeLb::start(peers[0]).await) } else { None });
            peer_addrs.push(peers);
        }
        let mut regions = Vec::new();
        for (i, (name, origin)) in spec.regions.iter().zip(origins).enumerate() {
            let interval = spec.health_interval.as_millis();
            let mut started = Vec::new();
            for (k, peer) in peer_addrs[i].iter().enumerate() {
                let mut cfg = ProxyConfig::new(name, origin.addr)
                    .peer_listen(Some(peer))
                    .origin(&format!("max_concurrency = {}", spec.max_concurrency))
                    .health(&format!("{interval}ms"), &format!("{}ms", (interval / 2).max(1)))
                    .extra(spec.extra);
                if spec.table.is_some() {
                    cfg = cfg.table(&table_path);
                }
                if !spec.admin_extra.is_empty() {
                    cfg = cfg.admin(spec.admin_extra);
                }
                for (j, other) in spec.regions.iter().enumerate() {
                    if i != j {
                        let lb =
                            lbs[j].as_ref().map(|l| format!("lb = [\"{}\"]", l.addr)).unwrap_or_default();
                        cfg = cfg.peer_with(other, &peer_addrs[j], &lb);
                    }
                }
                let file = if k == 0 { name.to_string() } else { format!("{name}-{k}") };
                started.push(cfg.start_in(dir.path(), &file).await);
            }
            let proxy = started.remove(0);
            regions.push(Region {
                name: name.to_string(),
                origin,
                proxy,
                lb: lbs[i].take(),
                peer_addr: peer_addrs[i][0],
                more: started,
                peer_addrs: peer_addrs[i].clone(),
            });
        }
        Fleet { regions, health_interval: spec.health_interval, _dir: dir }
    }

    pub fn region(&self, name: &str) -> &Region {
        self.regions.iter().find(|r| r.name == name).expect("region")
    }

    /// Every proxy's admin address, region by region.
    pub fn admins(&self) -> Vec<SocketAddr> {
        self.regions.iter().flat_map(|r| r.proxies().map(|p| p.addrs.admin)).collect()
    }

    /// Waits until every proxy has had its first probes of the others answered and sees
    /// every target healthy (at most 10 s, or 10 health intervals when that is longer).
    pub async fn wait_settled(&self) {
        let limit = Duration::from_secs(10).max(self.health_interval * 10);
        wait_probed_and_healthy(&self.admins(), limit).await;
    }

    pub async fn stop(self) {
        for r in self.regions {
            r.proxy.stop().await;
            for p in r.more {
                p.stop().await;
            }
        }
    }
}
