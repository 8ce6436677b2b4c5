//! The demo's world: three regions on loopback, each with an origin, two flowgate proxies
//! on the real `serve` path (config text → `Config` → `Server`) and a load balancer in
//! front of the proxies' peer listeners. Ports are picked by the kernel, so two demos can
//! run side by side; each is bound once, before the configs that name it are written.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::lb::DemoLb;
use super::operator;
use super::origin::DemoOrigin;
use crate::config::Config;
use crate::control::Control;
use crate::fleet::FleetFile;
use crate::server::{BoundAddrs, Listeners, Server};

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

/// One proxy's listeners, bound before its config is written: the config names their
/// addresses, and the server takes the sockets as they are ([`Server::from_listeners`]),
/// so no port is ever released and bound again (another connection could take it).
struct Sockets {
    public: TcpListener,
    peer: TcpListener,
    admin: TcpListener,
}

impl Sockets {
    async fn bind() -> Result<Sockets, String> {
        let one = || async {
            TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot listen on 127.0.0.1:0: {e}"))
        };
        Ok(Sockets { public: one().await?, peer: one().await?, admin: one().await? })
    }

    fn addr(l: &TcpListener) -> Result<SocketAddr, String> {
        l.local_addr().map_err(|e| format!("a bound listener has no address: {e}"))
    }
}

fn config_text(
    region: &str,
    i: usize,
    dir: &Path,
    [public, peer, admin]: [SocketAddr; 3],
    origin: SocketAddr,
    peers: &str,
) -> String {
    format!(
        r#"region = "{region}"

[listen]
public = "{public}"
peer = "{peer}"

[admin]
listen = "{admin}"
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
    /// Starts every origin, load balancer and proxy; the fleet file is written to
    /// `dir/fleet.toml` and read back, as an operator's command would read it.
    pub(crate) async fn start(dir: &Path, token: &str) -> Result<World, String> {
        std::fs::write(dir.join("tokens"), format!("demo {token}\n"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut sockets: Vec<Vec<Sockets>> = Vec::new();
        let mut peers: Vec<Vec<SocketAddr>> = Vec::new();
        for _ in REGIONS {
            let mut v = Vec::new();
            for _ in 0..PROXIES_PER_REGION {
                v.push(Sockets::bind().await?);
            }
            peers.push(v.iter().map(|s| Sockets::addr(&s.peer)).collect::<Result<_, _>>()?);
            sockets.push(v);
        }
        let mut regions = Vec::new();
        for (r, name) in REGIONS.iter().enumerate() {
            let origin = DemoOrigin::start(name).await.map_err(|e| format!("an origin: {e}"))?;
            let lb = DemoLb::start(peers[r].clone()).await.map_err(|e| format!("a load balancer: {e}"))?;
            regions.push(DemoRegion { name, origin, lb, proxies: Vec::new() });
        }
        // Every address is known now: write the configs and start.
        let mut admins = Vec::new();
        for (r, region_sockets) in sockets.into_iter().enumerate() {
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
            let mut region_admins = Vec::new();
            for (i, s) in region_sockets.into_iter().enumerate() {
                let addrs = [Sockets::addr(&s.public)?, Sockets::addr(&s.peer)?, Sockets::addr(&s.admin)?];
                let text = config_text(REGIONS[r], i, dir, addrs, regions[r].origin.addr, &peer_tables);
                let path = dir.join(format!("{}-{i}.toml", REGIONS[r]));
                std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
                let cfg = Config::load(&path).map_err(|e| e.to_string())?;
                let bound = Listeners { public: Some(s.public), peer: Some(s.peer), admin: Some(s.admin) };
                let server = Server::from_listeners(cfg, bound)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let addrs = server.addrs();
                region_admins.push(addrs.admin);
                let control = server.control();
                let (tx, rx) = oneshot::channel();
                let done = tokio::spawn(server.run(async {
                    let _ = rx.await;
                }));
                regions[r].proxies.push(DemoProxy { addrs, control, stop: Some(tx), done });
            }
            admins.push((REGIONS[r], region_admins));
        }
        let file = dir.join("fleet.toml");
        std::fs::write(&file, operator::fleet_toml(&admins, CAPACITY_RPS))
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let mut fleet = FleetFile::load(&file).map_err(|e| e.to_string())?;
        fleet.token_value = Some(token.to_owned());
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
