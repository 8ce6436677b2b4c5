//! A real authoritative DNS server: Debian's bind9 (`/usr/sbin/named`) on 127.0.0.1 at a
//! port picked by the kernel, serving the zone `example.test.` (dynamic updates allowed
//! with a TSIG key) from a temporary folder, with `api.example.test.` holding one A record
//! per region. Queried with `dig` (bind9-dnsutils). Killed on drop.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const NAMED: &str = "/usr/sbin/named";
pub const ZONE: &str = "example.test.";
pub const NAME: &str = "api.example.test.";
pub const KEY_NAME: &str = "flowgate-test-key";
/// The regions' A records of [`NAME`] the zone starts with.
pub const REGIONS: [(&str, &str); 3] =
    [("us-east-1", "127.0.0.11"), ("us-west-2", "127.0.0.12"), ("eu-west-1", "127.0.0.13")];

/// `named`, `nsupdate` and `dig` are all installed.
pub fn available() -> bool {
    Path::new(NAMED).is_file() && on_path("nsupdate") && on_path("dig")
}

/// Panics (the test fails) unless bind9 is installed, saying what to install.
pub fn require() {
    assert!(
        available(),
        "this test needs {NAMED}, nsupdate and dig: install Debian's bind9 and bind9-dnsutils \
         (apt-get install -y bind9 bind9-dnsutils; .ci/run does)"
    );
}

use super::on_path;
use super::wait::poll_blocking;

pub struct Bind9 {
    pub port: u16,
    /// The TSIG key file (named.conf syntax), usable with `nsupdate -k`.
    pub key_file: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Bind9 {
    /// Starts named and waits until it answers for [`NAME`]; retries with another port if
    /// it fails to start (the port picked may have been taken in between).
    pub fn start() -> Bind9 {
        require();
        let mut errors = Vec::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(b) => return b,
                Err(e) => errors.push(e),
            }
        }
        panic!("named did not start:\n{}", errors.join("\n---\n"));
    }

    fn try_start() -> Result<Bind9, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let port = free_port();
        let key_file = dir.path().join("update.key");
        std::fs::write(&key_file, tsig_key()).map_err(|e| format!("write key: {e}"))?;
        let zone_file = dir.path().join("example.test.zone");
        std::fs::write(&zone_file, zone_text()).map_err(|e| format!("write zone: {e}"))?;
        let conf = dir.path().join("named.conf");
        let d = dir.path().display();
        let text = format!(
            r#"include "{key}";
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
    dnssec-validation no;
}};
controls {{ }};
zone "{zone}" {{
    type master;
    file "{zf}";
    allow-update {{ key "{KEY_NAME}"; }};
}};
"#,
            key = key_file.display(),
            zone = ZONE.trim_end_matches('.'),
            zf = zone_file.display(),
        );
        std::fs::write(&conf, text).map_err(|e| format!("write named.conf: {e}"))?;
        let log_path = dir.path().join("named.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("named.log: {e}"))?;
        let child = Command::new(NAMED)
            .args(["-g", "-n", "1", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {NAMED}: {e}"))?;
        let mut b = Bind9 { port, key_file, dir, child };
        // `Ok` ends the wait: named answers, or it exited; `Err` waits on.
        let up = poll_blocking(Duration::from_secs(10), Duration::from_millis(50), || {
            if let Ok(Some(status)) = b.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Ok(Err(format!("named exited ({status}) on port {port}:\n{log}")));
            }
            if dig(port, NAME, "A").is_ok_and(|a| !a.is_empty()) { Ok(Ok(())) } else { Err(()) }
        });
        match up {
            Ok(Ok(())) => Ok(b),
            Ok(Err(e)) => Err(e),
            Err(()) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                // `b` is dropped on return: named killed.
                Err(format!("named did not answer on port {port} within 10 s:\n{log}"))
            }
        }
    }

    /// The A records of `name`, sorted (panics if dig fails).
    pub fn a_records(&self, name: &str) -> Vec<String> {
        self.query(name, "A")
    }

    /// The records of `name` of type `rtype`, sorted (panics if dig fails).
    pub fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        dig(self.port, name, rtype).unwrap_or_else(|e| panic!("dig {name} {rtype}: {e}"))
    }

    /// What named logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Bind9 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dig +short` against 127.0.0.1:`port`, the lines sorted.
fn dig(port: u16, name: &str, rtype: &str) -> Result<Vec<String>, String> {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "+norecurse", "+time=1", "+tries=1"])
        .args([name, rtype])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("dig: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("dig exited {}: {text}", out.status));
    }
    let mut lines: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    lines.sort();
    Ok(lines)
}

/// A port free for both UDP and TCP on 127.0.0.1 (released again: named binds it).
fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind tcp 127.0.0.1:0");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A key statement for named.conf and `nsupdate -k`: from tsig-keygen when installed,
/// else hmac-sha256 with a random secret of our own.
fn tsig_key() -> String {
    if let Ok(out) = Command::new("tsig-keygen").args(["-a", "hmac-sha256", KEY_NAME]).output()
        && out.status.success()
        && !out.stdout.is_empty()
    {
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let secret: [u8; 32] = rand::random();
    format!("key \"{KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n", base64(&secret))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn zone_text() -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL 30\n\
         @ IN SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 30\n\
         @ IN NS ns1.{ZONE}\n\
         ns1 IN A 127.0.0.1\n"
    );
    for (_, addr) in REGIONS {
        z.push_str(&format!("{NAME} 30 IN A {addr}\n"));
    }
    z
}
