//! Config text for a test proxy, built up instead of written out again in every test: one
//! region in front of an origin `api` with one route to it, every listener on loopback
//! port 0 unless told otherwise, and whatever a test adds (peers, `[health]`, admin keys,
//! whole extra tables).
//!
//! ```ignore
//! let text = ProxyConfig::new("us-east-1", origin.addr)
//!     .peer("us-west-2", &[west_peer])
//!     .health("200ms", "100ms")
//!     .extra("[timeouts]\nrequest = \"2s\"\n")
//!     .text();
//! ```

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;

use flowgate::config::Config;

use super::{ProxyProcess, TestProxy};

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    region: String,
    top: Vec<String>,
    public: String,
    peer: Option<String>,
    listen: Vec<String>,
    admin: String,
    admin_lines: Vec<String>,
    endpoints: Vec<String>,
    origin_lines: Vec<String>,
    peers: Vec<String>,
    route_host: Option<String>,
    drain: Option<(String, String)>,
    health: Vec<String>,
    extra: Vec<String>,
}

/// A TOML string (paths and names as the tests write them: Rust's debug quoting).
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn list(items: &[impl Display]) -> String {
    let items: Vec<String> = items.iter().map(|i| quoted(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

impl ProxyConfig {
    /// `region` in front of `origin`, public, peer and admin listeners on port 0, a drain
    /// delay of 0 (stopping is quick) and a drain timeout of 2 s.
    pub fn new(region: &str, origin: impl Display) -> ProxyConfig {
        ProxyConfig {
            region: region.to_owned(),
            top: Vec::new(),
            public: "127.0.0.1:0".to_owned(),
            peer: Some("127.0.0.1:0".to_owned()),
            listen: Vec::new(),
            admin: "127.0.0.1:0".to_owned(),
            admin_lines: Vec::new(),
            endpoints: vec![origin.to_string()],
            origin_lines: Vec::new(),
            peers: Vec::new(),
            route_host: None,
            drain: Some(("0s".to_owned(), "2s".to_owned())),
            health: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn region(mut self, region: &str) -> ProxyConfig {
        self.region = region.to_owned();
        self
    }

    /// A top-level line (before `[listen]`).
    pub fn top(mut self, line: &str) -> ProxyConfig {
        self.top.push(line.to_owned());
        self
    }

    /// `table = PATH`: the table file at start.
    pub fn table(self, path: &Path) -> ProxyConfig {
        let line = format!("table = {}", quoted(&path.display().to_string()));
        self.top(&line)
    }

    /// The peer listener's address (`None`: no plain peer listener).
    pub fn peer_listen(mut self, addr: Option<impl Display>) -> ProxyConfig {
        self.peer = addr.map(|a| a.to_string());
        self
    }

    /// A line of `[listen]` (e.g. `peer_tls = ...`).
    pub fn listen_line(mut self, line: &str) -> ProxyConfig {
        self.listen.push(line.to_owned());
        self
    }

    /// The admin listener's address.
    pub fn admin_listen(mut self, addr: impl Display) -> ProxyConfig {
        self.admin = addr.to_string();
        self
    }

    /// A line of `[admin]` (e.g. `token_env = "X"`, `max_table_bytes = 4096`); several
    /// lines at once are fine.
    pub fn admin(mut self, line: &str) -> ProxyConfig {
        self.admin_lines.push(line.trim_end().to_owned());
        self
    }

    /// `[admin] token_file`.
    pub fn token_file(self, path: &Path) -> ProxyConfig {
        let line = format!("token_file = {}", quoted(&path.display().to_string()));
        self.admin(&line)
    }

    /// `[admin] state_dir`.
    pub fn state_dir(self, path: &Path) -> ProxyConfig {
        let line = format!("state_dir = {}", quoted(&path.display().to_string()));
        self.admin(&line)
    }

    /// The `api` origin's endpoints, instead of the one given to `new`.
    pub fn endpoints(mut self, endpoints: &[impl Display]) -> ProxyConfig {
        self.endpoints = endpoints.iter().map(ToString::to_string).collect();
        self
    }

    /// A line of `[origins.api]` (e.g. `max_concurrency = 10`, `health = "tcp"`).
    pub fn origin(mut self, line: &str) -> ProxyConfig {
        self.origin_lines.push(line.trim_end().to_owned());
        self
    }

    /// `[peers.NAME]` reached at `proxies`.
    pub fn peer(self, name: &str, proxies: &[impl Display]) -> ProxyConfig {
        self.peer_with(name, proxies, "")
    }

    /// `[peers.NAME]` with more lines (`lb = [...]`, `tls = true`, ...).
    pub fn peer_with(mut self, name: &str, proxies: &[impl Display], lines: &str) -> ProxyConfig {
        let mut table = format!("[peers.{name}]\n");
        for l in lines.lines().filter(|l| !l.trim().is_empty()) {
            table.push_str(l);
            table.push('\n');
        }
        table.push_str(&format!("proxies = {}\n", list(proxies)));
        self.peers.push(table);
        self
    }

    /// The one route's `host` (every host when not given).
    pub fn route_host(mut self, host: &str) -> ProxyConfig {
        self.route_host = Some(host.to_owned());
        self
    }

    /// `[drain]`; `None` leaves the table out (the defaults, or one in `extra`).
    pub fn drain(mut self, delay_timeout: Option<(&str, &str)>) -> ProxyConfig {
        self.drain = delay_timeout.map(|(d, t)| (d.to_owned(), t.to_owned()));
        self
    }

    /// `[health]` interval and timeout (e.g. `"200ms"`, `"100ms"`).
    pub fn health(self, interval: &str, timeout: &str) -> ProxyConfig {
        let lines = format!("interval = \"{interval}\"\ntimeout = \"{timeout}\"");
        self.health_line(&lines)
    }

    /// A line of `[health]` (e.g. `peer_subset = 0`).
    pub fn health_line(mut self, line: &str) -> ProxyConfig {
        self.health.push(line.trim_end().to_owned());
        self
    }

    /// TOML appended verbatim at the end (whole tables: `[timeouts]`, `[store]`, ...).
    pub fn extra(mut self, text: &str) -> ProxyConfig {
        self.extra.push(text.to_owned());
        self
    }

    pub fn text(&self) -> String {
        let mut t = format!("region = {}\n", quoted(&self.region));
        for l in &self.top {
            t.push_str(&format!("{l}\n"));
        }
        t.push_str(&format!("\n[listen]\npublic = \"{}\"\n", self.public));
        if let Some(peer) = &self.peer {
            t.push_str(&format!("peer = \"{peer}\"\n"));
        }
        for l in &self.listen {
            t.push_str(&format!("{l}\n"));
        }
        t.push_str(&format!("\n[admin]\nlisten = \"{}\"\n", self.admin));
        for l in &self.admin_lines {
            t.push_str(&format!("{l}\n"));
        }
        t.push_str(&format!("\n[origins.api]\nendpoints = {}\n", list(&self.endpoints)));
        for l in &self.origin_lines {
            t.push_str(&format!("{l}\n"));
        }
        for p in &self.peers {
            t.push_str(&format!("\n{p}"));
        }
        t.push_str("\n[[routes]]\n");
        if let Some(host) = &self.route_host {
            t.push_str(&format!("host = {}\n", quoted(host)));
        }
        t.push_str("origin = \"api\"\n");
        if let Some((delay, timeout)) = &self.drain {
            t.push_str(&format!("\n[drain]\ndelay = \"{delay}\"\ntimeout = \"{timeout}\"\n"));
        }
        if !self.health.is_empty() {
            t.push_str("\n[health]\n");
            for l in &self.health {
                t.push_str(&format!("{l}\n"));
            }
        }
        for e in &self.extra {
            t.push_str(&format!("\n{e}\n"));
        }
        t
    }

    /// Writes the text to `dir/NAME.toml` and loads it from there (relative paths in it
    /// are then relative to `dir`).
    pub fn load_in(&self, dir: &Path, name: &str) -> Config {
        let text = self.text();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, &text).expect("write config");
        Config::load(&path).unwrap_or_else(|e| panic!("{name} config:\n{e}\n{text}"))
    }

    /// An in-process proxy on this config.
    pub async fn start(&self) -> TestProxy {
        TestProxy::start(&self.text()).await
    }

    /// An in-process proxy on this config, written to `dir/NAME.toml` first.
    pub async fn start_in(&self, dir: &Path, name: &str) -> TestProxy {
        TestProxy::start_with(self.load_in(dir, name)).await
    }

    /// The built binary on this config, with `env` added to its environment.
    pub fn spawn(&self, env: &[(&str, &str)]) -> ProxyProcess {
        ProxyProcess::spawn_env(&self.text(), env)
    }
}

/// Where nothing listens yet: a port to give a listener that must be known before its
/// proxy starts (peers list each other). Taken below the kernel's ephemeral range (32768
/// and up on Linux), where no other test's `bind(:0)` and no outgoing connection can take
/// it between this check and the proxy's own bind; each call in a process moves on to the
/// next port, and processes start apart.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let port = FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}
