//! The demo's world: three regions on loopback, each with an origin, two flowgate proxies
//! on the real `serve` path (config text → `Config` → `Server`) and a load balancer in
//! front of the proxies' peer listeners. Ports are picked by the kernel, so two demos can
//! run side by side.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::lb::DemoLb;
use super::origin::DemoOrigin;
use crate::config::Config;
use crate::control::Control;
use crate::fleet::{FleetFile, FleetRegion};
use crate::server::{BoundAddrs, Server};

/// The demo's regions, in the order the view lists them. Their roles go by position: the
/// exercise evacuates the first and crushes the second's load balancer; the third loses
/// its origin in the outage.
pub(crate) const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
pub(crate) const PROXIES_PER_REGION: usize = 2;
/// What each demo region can serve, for the planner.
pub(crate) const CAPACITY_RPS: f64 = 2000.0;

/// One running demo proxy.
pub(crate) struct DemoProxy {
    pub(crate) addrs: BoundAddrs,
    pub(crate) control: Arc<Control>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

pub(crate) struct DemoRegion {
    pub(crate) name: &'static str,
    pub(crate) origin: DemoOrigin,
    pub(crate) lb: DemoLb,
    pub(crate) proxies: Vec<DemoProxy>,
}

pub(crate) struct World {
    pub(crate) regions: Vec<DemoRegion>,
    pub(crate) fleet: FleetFile,
}

async fn reserve() -> std::io::Result<SocketAddr> {
    // Bound and released at once: the proxy binds it again a moment later. Peer
    // addresses must be known before any proxy starts, since every proxy names the others.
    TcpListener::bind("127.0.0.1:0").await?.local_addr()
}

fn config_text(
    region: &str,
    i: usize,
    dir: &Path,
    peer: SocketAddr,
    origin: SocketAddr,
    peers: &str,
) -> String {
    format!(
        r#"region = "{region}"

[listen]
public = "127.0.0.1:0"
peer = "{peer}"

[admin]
listen = "127.0.0.1:0"
token_file = "{tokens}"
state_dir = "{state}"

[origins.app]
endpoints = ["{origin}"]

{peers}
[[routes]]
origin = "app"

[health]
interval = "500ms"
timeout = "400ms"

[balance]
slow_start = "2s"

[bypass]
window = "3s"
min_samples = 5
latency_factor = 3.0
latency_floor = "100ms"
recover_after = "3s"

[drain]
delay = "0s"
timeout = "2s"
"#,
        tokens = dir.join("tokens").display(),
        state = dir.join(format!("state-{region}-{i}")).display(),
    )
}

impl World {
    pub(crate) async fn start(dir: &Path, token: &str) -> Result<World, String> {
        std::fs::write(dir.join("tokens"), format!("demo {token}\n"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let io = |e: std::io::Error| e.to_string();
        let mut peers: Vec<Vec<SocketAddr>> = Vec::new();
        for _ in REGIONS {
            let mut v = Vec::new();
            for _ in 0..PROXIES_PER_REGION {
                v.push(reserve().await.map_err(io)?);
            }
            peers.push(v);
        }
        let mut origins = Vec::new();
        let mut lbs = Vec::new();
        for (r, name) in REGIONS.iter().enumerate() {
            origins.push(DemoOrigin::start(name).await.map_err(io)?);
            lbs.push(DemoLb::start(peers[r].clone()).await.map_err(io)?);
        }
        let mut regions = Vec::new();
        let mut fleet_regions = BTreeMap::new();
        for (name, (origin, lb)) in REGIONS.iter().zip(origins.into_iter().zip(lbs)) {
            regions.push(DemoRegion { name, origin, lb, proxies: Vec::new() });
        }
        // The load balancers' addresses are known now: write the configs and start.
        for r in 0..REGIONS.len() {
            let mut peer_tables = String::new();
            for (o, other) in REGIONS.iter().enumerate() {
                if o == r {
                    continue;
                }
                let proxies: Vec<String> = peers[o].iter().map(|a| format!("\"{a}\"")).collect();
                peer_tables.push_str(&format!(
                    "[peers.{other}]\nlb = [\"{}\"]\nproxies = [{}]\n\n",
                    regions[o].lb.addr,
                    proxies.join(", ")
                ));
            }
            let mut admins = Vec::new();
            for (i, peer) in peers[r].iter().enumerate() {
                let text = config_text(REGIONS[r], i, dir, *peer, regions[r].origin.addr, &peer_tables);
                let path = dir.join(format!("{}-{i}.toml", REGIONS[r]));
                std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
                let cfg = Config::load(&path).map_err(|e| e.to_string())?;
                let server = Server::bind(cfg).await.map_err(|e| e.to_string())?;
                let addrs = server.addrs();
                admins.push(addrs.admin.to_string());
                let control = server.control();
                let (tx, rx) = oneshot::channel();
                let done = tokio::spawn(server.run(async {
                    let _ = rx.await;
                }));
                regions[r].proxies.push(DemoProxy { addrs, control, stop: Some(tx), done });
            }
            fleet_regions
                .insert(REGIONS[r].to_owned(), FleetRegion { admin: admins, capacity_rps: CAPACITY_RPS });
        }
        let fleet = FleetFile {
            file: dir.join("fleet.toml"),
            token_env: "FLOWGATE_ADMIN_TOKEN".into(),
            regions: fleet_regions,
            token_value: Some(token.to_owned()),
            store: None,
        };
        Ok(World { regions, fleet })
    }

    /// Stops every proxy (drain included).
    pub(crate) async fn stop(self) {
        for r in self.regions {
            for mut p in r.proxies {
                if let Some(tx) = p.stop.take() {
                    let _ = tx.send(());
                }
                let _ = p.done.await;
            }
        }
    }
}
