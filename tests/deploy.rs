//! The deploy files checked against the binary and its config.
//!
//! - `deploy/kubernetes`: every overlay rendered by `kubectl kustomize` (ignored test: needs
//!   kubectl, which `.ci/run` installs), and the same checks on the base and overlays read
//!   directly (a small render of our own: resources, configMapGenerator, namespace; no
//!   patches, no labels), so that the suite checks them everywhere; no kustomize v5
//!   deprecation warning; the proxies' NetworkPolicy and scrape annotations.
//! - `deploy/compose`: the two-region quick try's files exist, its configs validate and
//!   name each other's services.
//! - `config/fleet.toml` and each region's `[peers]` against the overlays' Services.
//! - `deploy/docker/Dockerfile` against the binary's flags and `deploy/docker/flowgate.toml`.
//! - `deploy/systemd/flowgate.service` against the binary's flags (`systemd-analyze verify`
//!   in an ignored test: needs systemd, which `.ci/run` installs).
//! - The autopilot (one per fleet): `deploy/kubernetes/autopilot` and
//!   `deploy/systemd/flowgate-autopilot.service` the same ways, against the proxies' files,
//!   and their command lines run on the binary.
//! - The probe paths and signals all of them name, against a running binary.
//! - `deploy/etcd`: the three etcd members' files against one another and their unit, and
//!   the `[store]` of its proxy config and fleet file against the members.
//!
//! Every rule compares two sides, so renaming a port, a path, a file or a Service on one
//! side only fails a test.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use flowgate::autopilot::switch;
use flowgate::cli::{AutopilotArgs, AutopilotCmd, Cli, Command as Cmd};
use flowgate::config::Config;
use flowgate::fleet::FleetFile;
use serde_yaml_ng::{Mapping, Value};
use support::outage::AutopilotProcess;
use support::wait::poll_blocking;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

/// The admin routes the probes must use (`src/admin.rs`); `admin_paths_and_signals_on_the_binary`
/// checks that a running binary answers them.
const READY_PATH: &str = "/readyz";
const LIVE_PATH: &str = "/healthz";

fn root(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the built binary; (exit code, stdout, stderr).
fn flowgate(args: &[&str]) -> (i32, String, String) {
    flowgate_env(args, &[])
}

/// `flowgate` with extra environment variables for the child.
fn flowgate_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).envs(env.iter().copied()).output().expect("run flowgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary's own command line parser, on the arguments after the program name.
fn parse_cli(what: &str, args: &[String]) -> Cmd {
    Cli::try_parse_from(std::iter::once("flowgate".to_owned()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| panic!("{what}: {args:?} is not a flowgate command line: {e}"))
        .command
}

/// `flowgate serve --config PATH` → PATH.
fn serve_config(what: &str, args: &[String]) -> PathBuf {
    match parse_cli(what, args) {
        Cmd::Serve { config, .. } => config,
        other => panic!("{what}: expected `serve --config FILE`, got {other:?}"),
    }
}

/// Writes the files of a config folder (a ConfigMap's data) to a temporary folder and has
/// the binary validate the config there, and the table it names if any.
fn validate_with_binary(
    what: &str,
    files: &BTreeMap<String, String>,
    config_key: &str,
    table_key: Option<&str>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (k, v) in files {
        std::fs::write(dir.path().join(k), v).expect("write");
    }
    let config = dir.path().join(config_key);
    let mut args = vec!["validate".to_owned(), "--config".into(), config.display().to_string()];
    if let Some(t) = table_key {
        args.extend(["--table".into(), dir.path().join(t).display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = flowgate(&args);
    assert_eq!(code, 0, "{what}: flowgate {args:?} refused it:\n{out}{err}");
}

/// Every listener of a container config must accept connections from outside it.
fn assert_unspecified(what: &str, field: &str, addr: SocketAddr) {
    assert!(
        addr.ip().is_unspecified(),
        "{what}: {field} = {addr}: in a container it must listen on 0.0.0.0 or [::], not one address"
    );
}

/// The config's listeners by the port names the deploy files use.
fn config_ports(cfg: &Config) -> BTreeMap<String, u16> {
    let mut want = BTreeMap::new();
    want.insert("public".to_owned(), cfg.listen.public.port());
    if let Some(p) = cfg.listen.public_tls {
        want.insert("public-tls".to_owned(), p.port());
    }
    if let Some(p) = cfg.listen.peer {
        want.insert("peer".to_owned(), p.port());
    }
    want.insert("admin".to_owned(), cfg.admin.listen.port());
    want
}

fn config_listeners(cfg: &Config) -> Vec<(&'static str, SocketAddr)> {
    let mut v = vec![("listen.public", cfg.listen.public), ("admin.listen", cfg.admin.listen)];
    v.extend(cfg.listen.public_tls.map(|a| ("listen.public_tls", a)));
    v.extend(cfg.listen.peer.map(|a| ("listen.peer", a)));
    v
}

fn drain_secs(cfg: &Config) -> (f64, f64) {
    (cfg.drain.delay.as_secs_f64(), cfg.drain.timeout.as_secs_f64())
}

/// A health check in exec form (the image's HEALTHCHECK, the autopilot's probes): the
/// image's binary running `probe` (no curl in the image) on loopback, plain HTTP, at
/// `port` and `path`, its --timeout ending before the runner's own (`within`).
fn check_probe_command(what: &str, argv: &[String], binary: &str, port: u16, path: &str, within: Duration) {
    assert_eq!(
        argv.first().map(String::as_str),
        Some(binary),
        "{what}: runs the image's binary {binary} (no curl in the image): {argv:?}"
    );
    let Cmd::Probe { url, timeout } = parse_cli(what, &argv[1..]) else {
        panic!("{what}: not `flowgate probe URL`: {argv:?}")
    };
    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{what}: {url}: {e}"));
    assert_eq!(uri.scheme_str(), Some("http"), "{what}: {url}");
    let host: std::net::IpAddr =
        uri.host().and_then(|h| h.parse().ok()).unwrap_or_else(|| panic!("{what}: {url}: a loopback IP"));
    assert!(host.is_loopback(), "{what}: {url}: probe from inside the container, on loopback");
    assert_eq!(uri.port_u16(), Some(port), "{what}: {url}: not the listener's port {port}");
    assert_eq!(uri.path(), path, "{what}: {url}: not the listener's health path {path}");
    assert!(
        timeout < within,
        "{what}: the probe's --timeout {timeout:?} must end before the runner's {within:?}"
    );
}

/// Runs a health check command as written, pointed at the built binary and `addr`.
fn probe_command_passes(argv: &[String], addr: SocketAddr) -> bool {
    let mut cmd = argv.to_vec();
    cmd[0] = BIN.to_owned();
    let uri: http::Uri = cmd.last().unwrap().parse().unwrap();
    *cmd.last_mut().unwrap() = format!("http://{addr}{}", uri.path());
    Command::new(&cmd[0]).args(&cmd[1..]).status().unwrap().success()
}

// ---------------------------------------------------------------------------------------
// The Dockerfile

#[derive(Debug)]
struct Instr {
    line: usize,
    cmd: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    from: String,
    name: Option<String>,
    instrs: Vec<Instr>,
}

impl Stage {
    fn all(&self, cmd: &str) -> impl Iterator<Item = &Instr> {
        let cmd = cmd.to_owned();
        self.instrs.iter().filter(move |i| i.cmd == cmd)
    }

    fn one(&self, cmd: &str) -> &Instr {
        let found: Vec<&Instr> = self.all(cmd).collect();
        assert_eq!(found.len(), 1, "Dockerfile: the final stage needs exactly one {cmd}: {found:?}");
        found[0]
    }
}

/// Instructions by stage; continuation lines joined, comments dropped.
fn dockerfile_stages(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if pending.is_empty() {
            start = n + 1;
        }
        if line.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let (cmd, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let instr = Instr { line: start, cmd: cmd.to_uppercase(), args: args.trim().to_owned() };
        if instr.cmd == "FROM" {
            let words: Vec<&str> = instr.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                _ => panic!("Dockerfile:{}: FROM {}", instr.line, instr.args),
            };
            stages.push(Stage { from: words[0].to_owned(), name, instrs: Vec::new() });
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("Dockerfile:{}: {} before FROM", instr.line, instr.cmd))
                .instrs
                .push(instr);
        }
    }
    assert!(pending.is_empty(), "Dockerfile ends inside a continued line");
    stages
}

/// The exec (JSON) form of ENTRYPOINT / CMD / HEALTHCHECK CMD; the shell form would need a
/// shell, which the image does not have.
fn exec_form(what: &str, args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("Dockerfile: {what} must be a JSON array (exec form): {args}: {e}"))
}

/// `--flag=value` options before the rest of an instruction.
fn options(args: &str) -> (BTreeMap<String, String>, String) {
    let mut opts = BTreeMap::new();
    let mut rest = args.trim();
    while let Some(r) = rest.strip_prefix("--") {
        let (opt, tail) = r.split_once(char::is_whitespace).unwrap_or((r, ""));
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        opts.insert(k.to_owned(), v.to_owned());
        rest = tail.trim_start();
    }
    (opts, rest.to_owned())
}

/// The Debian release an image is built on: `rust:1-bookworm` and `cc-debian12` are both 12.
fn debian_release(image: &str) -> Option<u32> {
    let names = [("bullseye", 11), ("bookworm", 12), ("trixie", 13), ("forky", 14)];
    if let Some((_, n)) = names.iter().find(|(name, _)| image.contains(name)) {
        return Some(*n);
    }
    let at = image.find("debian")? + "debian".len();
    image[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// What the image is, as the other deploy files need it.
#[derive(Debug)]
struct Image {
    /// ENTRYPOINT: the binary's path in the image.
    binary: String,
    uid: u32,
    distroless: bool,
    stop_signal: String,
    /// HEALTHCHECK CMD, exec form.
    healthcheck: Vec<String>,
    config_path: PathBuf,
    cfg: Config,
}

/// Parses `deploy/docker/Dockerfile` and checks it against the binary and the config it
/// copies. Every rule names the side that does not match.
fn image() -> Image {
    let text = read(&root("deploy/docker/Dockerfile"));
    let stages = dockerfile_stages(&text);
    assert!(
        stages.len() >= 2,
        "Dockerfile: a multi-stage build (builder, runtime), got {} stage(s)",
        stages.len()
    );

    // The builder: a release build of the locked dependency set.
    let build = &stages[0];
    let build_name = build.name.as_deref().expect("Dockerfile: the first stage is named (FROM ... AS build)");
    assert!(
        build.from.starts_with("rust:"),
        "Dockerfile: the builder is an official rust image: {}",
        build.from
    );
    let cargo = build
        .all("RUN")
        .find(|i| i.args.contains("cargo build"))
        .expect("Dockerfile: the builder runs cargo build");
    for flag in ["--release", "--locked"] {
        assert!(cargo.args.contains(flag), "Dockerfile:{}: cargo build without {flag}", cargo.line);
    }
    assert!(root("Cargo.lock").is_file(), "--locked needs Cargo.lock in the build context");
    let workdir =
        build.all("WORKDIR").last().map(|i| i.args.clone()).expect("Dockerfile: the builder sets WORKDIR");

    // The runtime: small, the same Debian release as the builder (the binary links glibc).
    let run = stages.last().unwrap();
    let distroless = run.from.starts_with("gcr.io/distroless/cc-debian");
    assert!(
        distroless || run.from.starts_with("debian:") && run.from.contains("-slim"),
        "Dockerfile: the runtime is distroless cc or debian slim: {}",
        run.from
    );
    assert_eq!(
        debian_release(&build.from),
        debian_release(&run.from),
        "Dockerfile: builder {} and runtime {} are different Debian releases (glibc)",
        build.from,
        run.from
    );

    // ENTRYPOINT is the binary copied from the builder; CMD is `serve --config FILE`.
    let entrypoint = exec_form("ENTRYPOINT", &run.one("ENTRYPOINT").args);
    assert_eq!(entrypoint.len(), 1, "Dockerfile: ENTRYPOINT is the binary alone: {entrypoint:?}");
    let binary = entrypoint[0].clone();
    let copies: Vec<(BTreeMap<String, String>, Vec<String>)> = run
        .all("COPY")
        .map(|i| {
            let (opts, rest) = options(&i.args);
            (opts, rest.split_whitespace().map(str::to_owned).collect())
        })
        .collect();
    let built = format!("{}/target/release/flowgate", workdir.trim_end_matches('/'));
    assert!(
        copies.iter().any(|(o, w)| o.get("from").map(String::as_str) == Some(build_name)
            && w.len() == 2
            && w[0] == built
            && w[1] == binary),
        "Dockerfile: COPY --from={build_name} {built} {binary} (the ENTRYPOINT) is missing: {copies:?}"
    );
    let cmd = exec_form("CMD", &run.one("CMD").args);
    let config_path = serve_config("Dockerfile CMD", &cmd);

    // The config in the image comes from the repository and the binary accepts it.
    let (_, words) = copies
        .iter()
        .find(|(o, w)| !o.contains_key("from") && w.len() == 2 && Path::new(&w[1]) == config_path)
        .unwrap_or_else(|| panic!("Dockerfile: nothing copies the config to {}", config_path.display()));
    let source = root(&words[0]);
    let cfg_text = read(&source);
    let cfg =
        Config::from_toml(&config_path, &cfg_text).unwrap_or_else(|e| panic!("{}: {e:?}", source.display()));
    let (code, out, err) = flowgate(&["validate", "--config", source.to_str().unwrap()]);
    assert_eq!(code, 0, "flowgate validate --config {}:\n{out}{err}", source.display());
    for (field, addr) in config_listeners(&cfg) {
        assert_unspecified("deploy/docker/flowgate.toml", field, addr);
    }

    // A numeric non-root user (so that Kubernetes' runAsNonRoot can check it).
    let user = run.one("USER").args.clone();
    let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
    let uid: u32 = uid.parse().unwrap_or_else(|_| panic!("Dockerfile: USER {user}: use numbers"));
    let gid: u32 = gid.parse().unwrap_or_else(|_| panic!("Dockerfile: USER {user}: use numbers"));
    assert!(uid != 0 && gid != 0, "Dockerfile: USER {user} is root");

    // EXPOSE: exactly the config's listeners.
    let exposed: BTreeSet<u16> = run
        .all("EXPOSE")
        .flat_map(|i| i.args.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|p| {
            let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
            assert_eq!(proto, "tcp", "Dockerfile: EXPOSE {p}");
            port.parse().unwrap_or_else(|_| panic!("Dockerfile: EXPOSE {p}"))
        })
        .collect();
    let listening: BTreeSet<u16> = config_ports(&cfg).into_values().collect();
    assert_eq!(exposed, listening, "Dockerfile: EXPOSE must list the config's public, peer and admin ports");

    // The state folder exists in the image, belongs to USER, and is a VOLUME.
    let state = cfg.admin.state_dir.clone().expect("deploy/docker/flowgate.toml sets [admin] state_dir");
    assert!(
        copies.iter().any(|(o, w)| o.get("chown").map(String::as_str) == Some(user.as_str())
            && w.last().map(Path::new) == Some(state.as_path())),
        "Dockerfile: COPY --chown={user} ... {} (the state folder, writable by USER) is missing",
        state.display()
    );
    let volumes: Vec<String> = run
        .all("VOLUME")
        .flat_map(|i| serde_json::from_str::<Vec<String>>(&i.args).unwrap_or_else(|_| vec![i.args.clone()]))
        .collect();
    assert!(
        volumes.iter().any(|v| Path::new(v) == state),
        "Dockerfile: VOLUME {} is missing: {volumes:?}",
        state.display()
    );

    // No token baked into the image: it comes from the environment at run time.
    for i in run.all("ENV").chain(run.all("ARG")) {
        assert!(
            !i.args.contains(&cfg.admin.token_env),
            "Dockerfile:{}: {} must not be in the image",
            i.line,
            cfg.admin.token_env
        );
    }
    assert!(
        text.contains(&cfg.admin.token_env),
        "Dockerfile: say that {} must be set at run time",
        cfg.admin.token_env
    );

    // HEALTHCHECK: the binary's probe of the admin listener's LIVE_PATH, within its timeout.
    let (hc_opts, hc_rest) = options(&run.one("HEALTHCHECK").args);
    let hc_cmd = hc_rest.strip_prefix("CMD").expect("Dockerfile: HEALTHCHECK CMD [...]");
    let healthcheck = exec_form("HEALTHCHECK CMD", hc_cmd.trim());
    let hc_timeout = humantime::parse_duration(hc_opts.get("timeout").map(String::as_str).unwrap_or("30s"))
        .expect("HEALTHCHECK --timeout");
    // The admin listener's liveness path, on the config's admin port, within Docker's timeout.
    check_probe_command(
        "Dockerfile: HEALTHCHECK",
        &healthcheck,
        &binary,
        cfg.admin.listen.port(),
        LIVE_PATH,
        hc_timeout,
    );

    let stop_signal = run.one("STOPSIGNAL").args.clone();
    assert_eq!(stop_signal, "SIGTERM", "Dockerfile: STOPSIGNAL SIGTERM is the signal flowgate drains on");

    // The build context: no build output sent to the daemon, and every COPY source sent.
    let ignore = read(&root(".dockerignore"));
    let ignored: Vec<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(
        ignored.iter().any(|l| ["target", "target/", "/target", "/target/"].contains(l)),
        ".dockerignore must exclude target/: {ignored:?}"
    );
    for (o, w) in &copies {
        if !o.contains_key("from") {
            let src = w[0].trim_start_matches("./");
            assert!(root(src).exists(), "Dockerfile: COPY {src}: no such file");
            assert!(
                !ignored.iter().any(|l| src.starts_with(l.trim_matches('/'))),
                ".dockerignore excludes {src}"
            );
        }
    }

    Image { binary, uid, distroless, stop_signal, healthcheck, config_path, cfg }
}

#[test]
fn dockerfile_matches_the_binary_and_its_config() {
    let img = image();
    assert_eq!(img.binary, "/usr/local/bin/flowgate");
    assert_eq!(img.config_path, Path::new("/etc/flowgate/flowgate.toml"));
    assert_eq!(img.uid, 65532, "distroless's nonroot user; deployment.yaml's runAsUser follows it");
    let (delay, timeout) = drain_secs(&img.cfg);
    assert!(delay + timeout < 45.0, "the README's `docker run --stop-timeout 45` must cover the drain");
}

#[test]
fn the_dockerfile_checks_catch_mistakes() {
    // The parser the checks rely on: stages, continuations, options, exec form.
    let stages = dockerfile_stages(
        "# c\nFROM rust:1-bookworm AS build\nRUN a \\\n  # inner\n  b\nFROM gcr.io/distroless/cc-debian12:nonroot\nHEALTHCHECK --timeout=5s \\\n CMD [\"/x\", \"probe\", \"u\"]\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("build"));
    assert_eq!(stages[0].instrs[0].args, "a  b");
    let (opts, rest) = options(&stages[1].instrs[0].args);
    assert_eq!(opts["timeout"], "5s");
    assert_eq!(exec_form("x", rest.strip_prefix("CMD").unwrap().trim()), ["/x", "probe", "u"]);
    assert_eq!(debian_release("rust:1-bookworm"), Some(12));
    assert_eq!(debian_release("gcr.io/distroless/cc-debian12:nonroot"), Some(12));
    assert_eq!(debian_release("rust:1-trixie"), Some(13));
    // The binary's parser refuses what it does not know.
    assert!(Cli::try_parse_from(["flowgate", "serve", "--conf", "/x"]).is_err());
    assert!(Cli::try_parse_from(["flowgate", "run", "--config", "/x"]).is_err());
}

// ---------------------------------------------------------------------------------------
// Kubernetes

fn yaml_docs(what: &str, text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))).collect()
        })
        .unwrap_or_default()
}

fn name_of(v: &Value) -> &str {
    s(&v["metadata"]["name"]).unwrap_or("?")
}

/// A small kustomize of our own for the test that runs without kubectl: `resources` and
/// `bases` (files and folders), `configMapGenerator` (create, merge, replace; no hash
/// suffix), `namespace`. Patches and labels are not applied (the base files carry their
/// labels themselves); the kubectl test renders those.
fn simple_render(dir: &Path) -> Vec<Value> {
    let kpath = dir.join("kustomization.yaml");
    let k: Value =
        serde_yaml_ng::from_str(&read(&kpath)).unwrap_or_else(|e| panic!("{}: {e}", kpath.display()));
    let mut docs = Vec::new();
    for r in seq(&k["bases"]).iter().chain(seq(&k["resources"])) {
        let p = dir.join(s(r).expect("resource path"));
        if p.is_dir() {
            docs.extend(simple_render(&p));
        } else {
            docs.extend(yaml_docs(&p.display().to_string(), &read(&p)));
        }
    }
    for g in seq(&k["configMapGenerator"]) {
        let name = s(&g["name"]).expect("configMapGenerator name");
        let mut data = Mapping::new();
        for f in seq(&g["files"]) {
            let f = s(f).expect("configMapGenerator file");
            let (key, path) =
                f.split_once('=').unwrap_or((Path::new(f).file_name().unwrap().to_str().unwrap(), f));
            data.insert(key.into(), read(&dir.join(path)).into());
        }
        let existing = docs.iter_mut().find(|d| s(&d["kind"]) == Some("ConfigMap") && name_of(d) == name);
        match (s(&g["behavior"]).unwrap_or("create"), existing) {
            ("create", None) => {
                let mut cm = Mapping::new();
                cm.insert("apiVersion".into(), "v1".into());
                cm.insert("kind".into(), "ConfigMap".into());
                let mut meta = Mapping::new();
                meta.insert("name".into(), name.into());
                cm.insert("metadata".into(), meta.into());
                cm.insert("data".into(), data.into());
                docs.push(cm.into());
            }
            ("merge", Some(cm)) => {
                let old = cm["data"].as_mapping_mut().expect("ConfigMap data");
                for (k, v) in data {
                    old.insert(k, v);
                }
            }
            ("replace", Some(cm)) => cm["data"] = data.into(),
            (b, found) => panic!(
                "{}: configMapGenerator {name}: behavior {b} with{} a base",
                kpath.display(),
                if found.is_some() { "" } else { "out" }
            ),
        }
    }
    if let Some(ns) = s(&k["namespace"]) {
        for d in &mut docs {
            if s(&d["kind"]) != Some("Namespace") {
                d["metadata"]["namespace"] = ns.into();
            }
        }
    }
    docs
}

/// `kubectl kustomize DIR` (KUBECTL names another kubectl, e.g. an old one).
fn kubectl_render(dir: &Path) -> Vec<Value> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("{kubectl}: {e} (install Debian's kubernetes-client; .ci/run does)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{kubectl} kustomize {}:\n{stderr}", dir.display());
    // kustomize v5 warns on stderr about deprecated fields (commonLabels, bases,
    // patchesStrategicMerge, vars, ...): the kustomizations use their replacements.
    assert!(
        !stderr.to_ascii_lowercase().contains("warning") && !stderr.contains("deprecated"),
        "{kubectl} kustomize {}: a warning:\n{stderr}",
        dir.display()
    );
    yaml_docs(&dir.display().to_string(), &String::from_utf8_lossy(&out.stdout))
}

/// What one rendered region says, for the checks across regions.
#[derive(Debug)]
struct Rendered {
    label: String,
    namespace: Option<String>,
    cfg: Config,
    files: BTreeMap<String, String>,
    table_key: Option<String>,
    config_map: String,
    /// Headless Service name (every pod's admin and peer port).
    headless: String,
    /// The peer Service other regions use as this region's load balancer: name, port.
    peer_service: (String, u16),
}

/// Resolves a probe's or Service's target port (a name or a number) to a container port.
fn container_port(ports: &BTreeMap<String, u16>, target: &Value, what: &str) -> (String, u16) {
    if let Some(name) = s(target) {
        let port =
            ports.get(name).unwrap_or_else(|| panic!("{what}: no container port named {name:?} ({ports:?})"));
        return (name.to_owned(), *port);
    }
    let n = target.as_u64().unwrap_or_else(|| panic!("{what}: port {target:?}"));
    let (name, port) = ports
        .iter()
        .find(|(_, p)| u64::from(**p) == n)
        .unwrap_or_else(|| panic!("{what}: no container port {n} ({ports:?})"));
    (name.clone(), *port)
}

fn seconds(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what}: a number of seconds, got {v:?}"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| s(&d["kind"]) == Some(kind)).collect()
}

/// A selector picks pods with these labels.
fn selects(selector: &BTreeMap<String, String>, pod_labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
}

/// A Deployment's pod spec and pod labels, which its selector must select.
fn pod_template<'a>(dep: &'a Value, what: &str) -> (&'a Value, BTreeMap<String, String>) {
    let pod_labels = labels(&dep["spec"]["template"]["metadata"]["labels"]);
    assert!(
        selects(&labels(&dep["spec"]["selector"]["matchLabels"]), &pod_labels),
        "{what}: the selector does not match the pod labels"
    );
    (&dep["spec"]["template"]["spec"], pod_labels)
}

/// A list of strings (args, an exec command).
fn strings(v: &Value, what: &str) -> Vec<String> {
    seq(v)
        .iter()
        .map(|a| s(a).unwrap_or_else(|| panic!("{what}: {a:?} is not a string")).to_owned())
        .collect()
}

/// The volume mounted at `dir` in container `c` of `pod`: (mount, volume).
fn mount_at<'a>(what: &str, pod: &'a Value, c: &'a Value, dir: &Path) -> Option<(&'a Value, &'a Value)> {
    seq(&c["volumeMounts"]).iter().find(|m| s(&m["mountPath"]).map(Path::new) == Some(dir)).map(|m| {
        let name = s(&m["name"]).expect("mount name");
        let vol = seq(&pod["volumes"])
            .iter()
            .find(|v| s(&v["name"]) == Some(name))
            .unwrap_or_else(|| panic!("{what}: volume {name} is mounted but not defined"));
        (m, vol)
    })
}

/// The files of a rendered ConfigMap.
fn config_map_data(what: &str, docs: &[Value], name: &str) -> BTreeMap<String, String> {
    let cm = of_kind(docs, "ConfigMap")
        .into_iter()
        .find(|d| name_of(d) == name)
        .unwrap_or_else(|| panic!("{what}: ConfigMap {name} is not rendered"));
    cm["data"]
        .as_mapping()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// A container's ports by name; every one is named.
fn container_ports(what: &str, c: &Value) -> BTreeMap<String, u16> {
    seq(&c["ports"])
        .iter()
        .map(|p| {
            let name =
                s(&p["name"]).unwrap_or_else(|| panic!("{what}: every container port is named: {p:?}"));
            let n = p["containerPort"].as_u64().expect("containerPort");
            (name.to_owned(), u16::try_from(n).expect("port"))
        })
        .collect()
}

/// The Secret (name, key) the container's `var` comes from; a literal or an optional
/// Secret fails.
fn token_secret(what: &str, c: &Value, var: &str) -> (String, String) {
    let env = seq(&c["env"]).iter().find(|e| s(&e["name"]) == Some(var)).unwrap_or_else(|| {
        panic!("{what}: no env {var}: flowgate refuses a non-loopback admin listener without a token")
    });
    let secret = &env["valueFrom"]["secretKeyRef"];
    let (name, key) = (s(&secret["name"]).unwrap_or(""), s(&secret["key"]).unwrap_or(""));
    assert!(
        !name.is_empty() && !key.is_empty(),
        "{what}: {var} comes from a Secret (secretKeyRef), not a literal"
    );
    assert!(secret["optional"].as_bool() != Some(true), "{what}: the token Secret is not optional");
    (name.to_owned(), key.to_owned())
}

/// What every flowgate container follows: a read-only root filesystem, no privilege
/// escalation, no capabilities, the image's (non-root) user; and resources.
fn check_container(what: &str, pod: &Value, c: &Value, img: &Image) {
    let csc = &c["securityContext"];
    let psc = &pod["securityContext"];
    let either = |k: &str| if csc[k].is_null() { &psc[k] } else { &csc[k] };
    assert_eq!(csc["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}: readOnlyRootFilesystem");
    assert_eq!(csc["allowPrivilegeEscalation"].as_bool(), Some(false), "{what}: allowPrivilegeEscalation");
    assert!(
        seq(&csc["capabilities"]["drop"]).iter().any(|d| s(d) == Some("ALL")),
        "{what}: drop ALL capabilities"
    );
    assert_eq!(either("runAsNonRoot").as_bool(), Some(true), "{what}: runAsNonRoot");
    assert_eq!(
        either("runAsUser").as_u64(),
        Some(u64::from(img.uid)),
        "{what}: runAsUser is the image's USER"
    );
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!c["resources"][kind][r].is_null(), "{what}: resources.{kind}.{r}");
        }
    }
}

/// The pod's terminationGracePeriodSeconds, Kubernetes' default if unset.
fn grace_secs(pod: &Value) -> f64 {
    match &pod["terminationGracePeriodSeconds"] {
        Value::Null => 30.0,
        v => seconds(v, "terminationGracePeriodSeconds"),
    }
}

/// A Service's ports: (port, container port name, container port); each targets a
/// container port by name or number and carries that port's name.
fn service_ports(sw: &str, svc: &Value, ports: &BTreeMap<String, u16>) -> Vec<(u16, String, u16)> {
    seq(&svc["spec"]["ports"])
        .iter()
        .map(|p| {
            let port = u16::try_from(p["port"].as_u64().expect("port")).unwrap();
            let target = if p["targetPort"].is_null() { &p["port"] } else { &p["targetPort"] };
            let (cname, cport) = container_port(ports, target, sw);
            assert_eq!(
                s(&p["name"]),
                Some(cname.as_str()),
                "{sw}: port {port} targets container port {cname}: name it so"
            );
            (port, cname, cport)
        })
        .collect()
}

/// Every object in one namespace, which the render creates if it names one.
fn one_namespace(label: &str, docs: &[Value]) -> Option<String> {
    let namespaces: BTreeSet<Option<String>> = docs
        .iter()
        .filter(|d| s(&d["kind"]) != Some("Namespace"))
        .map(|d| s(&d["metadata"]["namespace"]).map(str::to_owned))
        .collect();
    assert_eq!(namespaces.len(), 1, "{label}: objects in several namespaces: {namespaces:?}");
    let namespace = namespaces.into_iter().next().unwrap();
    if let Some(ns) = &namespace {
        let declared = of_kind(docs, "Namespace").iter().any(|d| name_of(d) == ns);
        assert!(declared, "{label}: namespace {ns} is used but not created");
    }
    namespace
}

/// Checks one region's objects against the binary, its config (from the ConfigMap) and the
/// image. The rules:
/// - the container runs the image's ENTRYPOINT with `serve --config P` (the binary's own
///   parser), P in a read-only mount of the ConfigMap, whose P key the binary validates (and
///   the table it names, from the same ConfigMap);
/// - container ports named public / peer / public-tls / admin are exactly the config's
///   listener ports, every listener on 0.0.0.0;
/// - readiness probes READY_PATH and liveness LIVE_PATH on the admin port;
/// - the token variable the config names comes from a Secret;
/// - the config's state_dir is a writable volume; the root filesystem is read-only; the
///   user is the image's, not root;
/// - preStop sleep ≥ drain.delay and terminationGracePeriodSeconds > preStop + delay +
///   timeout; no stop signal other than the image's SIGTERM;
/// - resources; Services select the pods and target container ports by name or number: a
///   public one, a peer one, a headless one with the admin port (port = container port),
///   none that exposes admin outside the cluster; PDB and HPA point at the pods.
fn check_region(label: &str, docs: &[Value], img: &Image) -> Rendered {
    let deps = of_kind(docs, "Deployment");
    assert_eq!(deps.len(), 1, "{label}: one Deployment");
    let dep = deps[0];
    let what = format!("{label}: Deployment {}", name_of(dep));
    let (pod, pod_labels) = pod_template(dep, &what);

    let containers = seq(&pod["containers"]);
    let c = containers
        .iter()
        .find(|c| s(&c["name"]) == Some("flowgate"))
        .unwrap_or_else(|| panic!("{what}: no container named flowgate"));

    // The command line, through the binary's parser.
    assert!(
        c["command"].is_null(),
        "{what}: no command: the image's ENTRYPOINT ({}) is the binary",
        img.binary
    );
    let args = strings(&c["args"], &what);
    let config_path = serve_config(&format!("{what} args"), &args);
    assert!(config_path.is_absolute(), "{what}: --config {} is relative", config_path.display());
    let config_dir = config_path.parent().unwrap();
    let config_key = config_path.file_name().unwrap().to_str().unwrap().to_owned();

    let (cm_mount, cm_vol) = mount_at(&what, pod, c, config_dir).unwrap_or_else(|| {
        panic!("{what}: nothing is mounted at {} (the --config folder)", config_dir.display())
    });
    assert_eq!(cm_mount["readOnly"].as_bool(), Some(true), "{what}: mount the config read-only");
    let config_map = s(&cm_vol["configMap"]["name"])
        .unwrap_or_else(|| panic!("{what}: {} is not a ConfigMap volume", config_dir.display()))
        .to_owned();
    let files = config_map_data(&format!("{what} (mounted at {})", config_dir.display()), docs, &config_map);
    let text = files.get(&config_key).unwrap_or_else(|| {
        panic!("{what}: ConfigMap {config_map} has no {config_key} for --config {}", config_path.display())
    });
    let cfg =
        Config::from_toml(&config_path, text).unwrap_or_else(|e| panic!("{label}: {config_key}: {e:?}"));
    let table_key = cfg.table.as_ref().map(|t| {
        assert_eq!(
            t.parent(),
            Some(config_dir),
            "{label}: table {} is not in the mounted ConfigMap",
            t.display()
        );
        let key = t.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            files.contains_key(&key),
            "{label}: the config's table {key} is not in ConfigMap {config_map}"
        );
        key
    });
    validate_with_binary(label, &files, &config_key, table_key.as_deref());

    // Ports: by name, the config's listeners, all of them and nothing else.
    let ports = container_ports(&what, c);
    assert_eq!(
        ports,
        config_ports(&cfg),
        "{what}: container ports (by name) against {config_key}'s listeners"
    );
    for (field, addr) in config_listeners(&cfg) {
        assert_unspecified(label, field, addr);
    }
    let admin_port = cfg.admin.listen.port();

    // Probes: the binary's paths on the admin port.
    for (probe, path) in [("readinessProbe", READY_PATH), ("livenessProbe", LIVE_PATH)] {
        let get = &c[probe]["httpGet"];
        assert_eq!(s(&get["path"]), Some(path), "{what}: {probe} path");
        assert!(
            matches!(s(&get["scheme"]), None | Some("HTTP")),
            "{what}: {probe} scheme: the admin listener is plain HTTP"
        );
        let (name, port) = container_port(&ports, &get["port"], &format!("{what}: {probe}"));
        assert_eq!(
            (name.as_str(), port),
            ("admin", admin_port),
            "{what}: {probe} is not on the admin listener"
        );
    }

    // The admin token: the config's variable, from a Secret.
    if !cfg.admin.listen.ip().is_loopback() && cfg.admin.token_file.is_none() {
        token_secret(&what, c, &cfg.admin.token_env);
    }

    // State and security.
    let state = cfg
        .admin
        .state_dir
        .clone()
        .unwrap_or_else(|| panic!("{label}: {config_key} sets no [admin] state_dir"));
    let (state_mount, state_vol) = mount_at(&what, pod, c, &state)
        .unwrap_or_else(|| panic!("{what}: nothing is mounted at state_dir {}", state.display()));
    assert!(state_mount["readOnly"].as_bool() != Some(true), "{what}: state_dir must be writable");
    assert!(
        !state_vol["emptyDir"].is_null() || !state_vol["persistentVolumeClaim"].is_null(),
        "{what}: state_dir {} is an emptyDir or a volume claim",
        state.display()
    );
    check_container(&what, pod, c, img);

    // Drain timing.
    let (delay, timeout) = drain_secs(&cfg);
    let grace = grace_secs(pod);
    let pre_stop = &c["lifecycle"]["preStop"];
    if img.distroless {
        assert!(
            pre_stop["exec"].is_null(),
            "{what}: preStop exec cannot run in the distroless image (no shell, no sleep): use the sleep action"
        );
    }
    let sleep = seconds(&pre_stop["sleep"]["seconds"], &format!("{what}: lifecycle.preStop.sleep.seconds"));
    assert!(sleep >= delay, "{what}: preStop sleeps {sleep} s, less than [drain] delay ({delay} s)");
    assert!(
        grace > sleep + delay + timeout,
        "{what}: terminationGracePeriodSeconds {grace} must exceed preStop {sleep} + [drain] delay {delay} + timeout {timeout}"
    );
    assert!(
        matches!(s(&c["lifecycle"]["stopSignal"]), None | Some("SIGTERM")),
        "{what}: flowgate drains on SIGTERM (the image's STOPSIGNAL)"
    );
    assert_eq!(img.stop_signal, "SIGTERM");

    // Services.
    let mut public = None;
    let mut peer_service = None;
    let mut headless = None;
    for svc in of_kind(docs, "Service") {
        let name = name_of(svc).to_owned();
        let sw = format!("{label}: Service {name}");
        assert!(
            selects(&labels(&svc["spec"]["selector"]), &pod_labels),
            "{sw}: the selector does not match the pods' labels"
        );
        let kind = s(&svc["spec"]["type"]).unwrap_or("ClusterIP");
        let is_headless = s(&svc["spec"]["clusterIP"]) == Some("None");
        for (port, cname, cport) in service_ports(&sw, svc, &ports) {
            if is_headless {
                assert_eq!(
                    port, cport,
                    "{sw}: a headless Service maps no ports: port {port} must be the container's {cport}"
                );
            }
            if cname == "admin" {
                assert!(kind == "ClusterIP", "{sw}: a {kind} Service must not expose the admin listener");
            }
            match (cname.as_str(), is_headless) {
                ("public", false) => public = Some(name.clone()),
                ("peer", false) => peer_service = Some((name.clone(), port)),
                ("admin", true) => headless = Some(name.clone()),
                _ => {}
            }
        }
    }
    assert!(public.is_some(), "{label}: no Service for the public port");
    let peer_service =
        peer_service.unwrap_or_else(|| panic!("{label}: no (non-headless) Service for the peer port"));
    let headless = headless
        .unwrap_or_else(|| panic!("{label}: no headless Service (clusterIP: None) with the admin port"));

    // PDB and HPA.
    let pdbs = of_kind(docs, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1, "{label}: one PodDisruptionBudget");
    assert!(
        selects(&labels(&pdbs[0]["spec"]["selector"]["matchLabels"]), &pod_labels),
        "{label}: the PDB selects the pods"
    );
    let hpas = of_kind(docs, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1, "{label}: one HorizontalPodAutoscaler");
    let target = &hpas[0]["spec"]["scaleTargetRef"];
    assert_eq!(
        (s(&target["kind"]), s(&target["name"])),
        (Some("Deployment"), Some(name_of(dep))),
        "{label}: the HPA scales the Deployment"
    );
    let min = hpas[0]["spec"]["minReplicas"].as_u64().unwrap_or(1);
    let max = hpas[0]["spec"]["maxReplicas"].as_u64().expect("maxReplicas");
    let unavailable = pdbs[0]["spec"]["maxUnavailable"].as_u64().expect("PDB maxUnavailable (a number)");
    assert!(
        min >= 2 && max >= min && unavailable < min,
        "{label}: HPA {min}..{max} with PDB maxUnavailable {unavailable}"
    );
    assert!(
        dep["spec"]["replicas"].is_null(),
        "{label}: the HPA owns the replica count; the Deployment sets none"
    );

    let namespace = one_namespace(label, docs);
    Rendered { label: label.to_owned(), namespace, cfg, files, table_key, config_map, headless, peer_service }
}

fn overlay_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root("deploy/kubernetes/overlays"))
        .expect("deploy/kubernetes/overlays")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 2, "one overlay per example region: {names:?}");
    names
}

/// The checks across regions: each overlay is its region; config/fleet.toml reaches every
/// region's pods through its headless Service; each region's [peers] name the other
/// regions' Services; every region starts from the same table.
fn check_fleet(regions: &[Rendered]) {
    let fleet_path = root("config/fleet.toml");
    let fleet = flowgate::fleet::FleetFile::load(&fleet_path).unwrap_or_else(|e| panic!("{e}"));
    let names: BTreeSet<&str> = regions.iter().map(|r| r.label.as_str()).collect();
    let in_fleet: BTreeSet<&str> = fleet.regions.keys().map(String::as_str).collect();
    assert_eq!(in_fleet, names, "config/fleet.toml's regions against deploy/kubernetes/overlays");
    let dns = |svc: &str, r: &Rendered, port: u16| {
        let ns = r.namespace.as_deref().unwrap_or_else(|| panic!("{}: no namespace", r.label));
        format!("{svc}.{ns}.svc.cluster.local:{port}")
    };
    for r in regions {
        assert_eq!(r.cfg.region, r.label, "overlays/{}: its config's region", r.label);
        // A headless name resolves to pod addresses: the port is the pods' admin port.
        let want = format!("dns:{}", dns(&r.headless, r, r.cfg.admin.listen.port()));
        assert_eq!(fleet.regions[&r.label].admin, [want], "config/fleet.toml: regions.{}.admin", r.label);

        let others: BTreeSet<&str> = names.iter().copied().filter(|n| *n != r.label).collect();
        let peers: BTreeSet<&str> = r.cfg.peers.keys().map(String::as_str).collect();
        assert_eq!(peers, others, "overlays/{}: [peers] against the other overlays", r.label);
        for o in regions.iter().filter(|o| o.label != r.label) {
            let p = &r.cfg.peers[&o.label];
            let lb = dns(&o.peer_service.0, o, o.peer_service.1);
            assert_eq!(
                p.lb,
                [lb],
                "overlays/{}: [peers.{}] lb is {}'s peer Service",
                r.label,
                o.label,
                o.label
            );
            let peer_port = o.cfg.listen.peer.expect("peer listener").port();
            let direct = dns(&o.headless, o, peer_port);
            assert_eq!(
                p.proxies,
                [direct],
                "overlays/{}: [peers.{}] proxies is {}'s headless Service",
                r.label,
                o.label,
                o.label
            );
        }
        let table =
            r.table_key.as_ref().unwrap_or_else(|| panic!("overlays/{}: the config names no table", r.label));
        assert_eq!(
            r.files[table],
            regions[0].files[regions[0].table_key.as_ref().unwrap()],
            "{}: every region starts from the same table",
            r.label
        );
    }
}

/// The kustomizations use current kustomize fields only: the ones kustomize v5 reads
/// without a deprecation warning (their deprecated forms, `commonLabels`, `bases`,
/// `patchesStrategicMerge`, `patchesJson6902` and `vars`, are named as such), and the ones
/// the direct read here understands or leaves to kubectl (`labels`, `patches`).
fn check_kustomize_fields(dir: &Path) {
    let kpath = dir.join("kustomization.yaml");
    let k: Value = serde_yaml_ng::from_str(&read(&kpath)).unwrap();
    let current =
        ["apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator", "patches", "images"];
    let deprecated = [
        ("commonLabels", "labels (with includeSelectors: true)"),
        ("bases", "resources"),
        ("patchesStrategicMerge", "patches"),
        ("patchesJson6902", "patches"),
        ("vars", "replacements"),
    ];
    for key in k.as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        if let Some((_, instead)) = deprecated.iter().find(|(d, _)| *d == key) {
            panic!("{}: {key} is deprecated in kustomize v5: use {instead}", kpath.display());
        }
        assert!(current.contains(&key), "{}: {key} is not a field these tests know", kpath.display());
    }
    for l in seq(&k["labels"]) {
        // commonLabels put the labels in the selectors as well; labels does only when told,
        // and the Deployments, Services and PDBs select by them.
        assert_eq!(l["includeSelectors"].as_bool(), Some(true), "{}: labels: {l:?}", kpath.display());
    }
    for r in seq(&k["resources"]) {
        let p = dir.join(s(r).unwrap());
        assert!(p.exists(), "{}: resources: {r:?} does not exist", kpath.display());
        if p.is_dir() {
            check_kustomize_fields(&p);
        }
    }
}

/// A Kubernetes label selector (matchLabels and matchExpressions) picks pods with `pod`.
fn selector_admits(sel: &Value, pod: &BTreeMap<String, String>) -> bool {
    let labels_ok = labels(&sel["matchLabels"]).iter().all(|(k, v)| pod.get(k) == Some(v));
    let exprs_ok = seq(&sel["matchExpressions"]).iter().all(|e| {
        let key = s(&e["key"]).expect("matchExpressions key");
        let values: Vec<&str> = seq(&e["values"]).iter().filter_map(s).collect();
        match s(&e["operator"]) {
            Some("In") => pod.get(key).is_some_and(|v| values.contains(&v.as_str())),
            Some("NotIn") => pod.get(key).is_none_or(|v| !values.contains(&v.as_str())),
            Some("Exists") => pod.contains_key(key),
            Some("DoesNotExist") => !pod.contains_key(key),
            other => panic!("matchExpressions operator {other:?}"),
        }
    });
    labels_ok && exprs_ok
}

/// Whether an ingress rule of a NetworkPolicy lets a pod with `pod` labels (in any
/// namespace) reach container port `port` (named `name`).
fn rule_admits(rule: &Value, name: &str, port: u16, pod: &BTreeMap<String, String>) -> bool {
    let ports = seq(&rule["ports"]);
    let covers = ports.is_empty()
        || ports.iter().any(|p| s(&p["port"]) == Some(name) || p["port"].as_u64() == Some(u64::from(port)));
    let from = seq(&rule["from"]);
    covers
        && (from.is_empty()
            || from.iter().any(|f| {
                assert!(f["ipBlock"].is_null(), "an ipBlock in the base's policy: {f:?}");
                // An empty namespaceSelector is every namespace; a peer without one is
                // the policy's own namespace, which the pods below are not all in.
                let any_ns = f["namespaceSelector"].as_mapping().is_some_and(|m| m.is_empty());
                any_ns && f["podSelector"].is_mapping() && selector_admits(&f["podSelector"], pod)
            }))
}

/// The proxies' NetworkPolicy: it applies to the Deployment's pods; the public port is
/// open to every client; the peer port only to flowgate proxies (of any region); the
/// admin port only to the fleet tools (the autopilot, whose pod labels are `pilot`, and
/// pods labelled `flowgate.io/fleet-tool: "true"`) and the metrics scraper.
fn check_network_policy(label: &str, docs: &[Value], pilot: &BTreeMap<String, String>) {
    let dep = of_kind(docs, "Deployment").into_iter().find(|d| name_of(d) == "flowgate").expect("Deployment");
    let (pod, proxy) = pod_template(dep, label);
    let c = seq(&pod["containers"]).iter().find(|c| s(&c["name"]) == Some("flowgate")).expect("container");
    let ports = container_ports(label, c);
    let policies: Vec<&Value> = of_kind(docs, "NetworkPolicy")
        .into_iter()
        .filter(|p| selector_admits(&p["spec"]["podSelector"], &proxy))
        .collect();
    assert_eq!(policies.len(), 1, "{label}: one NetworkPolicy selects the proxies");
    let spec = &policies[0]["spec"];
    assert!(
        seq(&spec["policyTypes"]).iter().any(|t| s(t) == Some("Ingress")),
        "{label}: policyTypes Ingress"
    );
    let admits = |name: &str, who: &BTreeMap<String, String>| {
        let port = ports[name];
        seq(&spec["ingress"]).iter().any(|r| rule_admits(r, name, port, who))
    };
    let pod_of = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let other_region = pod_of(&[
        ("app.kubernetes.io/name", "flowgate"),
        ("app.kubernetes.io/instance", "flowgate-elsewhere"),
    ]);
    let fleet_tool = pod_of(&[("flowgate.io/fleet-tool", "true")]);
    let stranger = pod_of(&[("app.kubernetes.io/name", "something-else")]);
    assert!(admits("public", &stranger), "{label}: the public port is open to every client");
    for p in [&proxy, &other_region] {
        assert!(admits("peer", p), "{label}: proxies {p:?} reach the peer port");
        assert!(!admits("admin", p), "{label}: proxies {p:?} have no business on the admin port");
    }
    for p in [pilot, &fleet_tool, &stranger] {
        assert!(!admits("peer", p), "{label}: {p:?} must not reach the peer port");
    }
    for p in [pilot, &fleet_tool] {
        assert!(admits("admin", p), "{label}: the fleet tool {p:?} reaches the admin port");
    }
    assert!(!admits("admin", &stranger), "{label}: an unlabelled pod must not reach the admin port");
    for (name, port) in &ports {
        assert!(
            ["public", "peer", "admin"].contains(&name.as_str()),
            "{label}: container port {name} ({port}) is not covered by these checks"
        );
    }
}

/// Prometheus's pod annotations (prometheus.io/scrape, port, path) on a Deployment's pod
/// template: they name `port` (the container port named `port_name`) and `/metrics`.
fn check_scrape_annotations(label: &str, docs: &[Value], deployment: &str, container: &str, port_name: &str) {
    let dep = of_kind(docs, "Deployment").into_iter().find(|d| name_of(d) == deployment).expect("Deployment");
    let a = labels(&dep["spec"]["template"]["metadata"]["annotations"]);
    let (pod, _) = pod_template(dep, label);
    let c = seq(&pod["containers"]).iter().find(|c| s(&c["name"]) == Some(container)).expect("container");
    let port = container_ports(label, c)[port_name];
    let get = |k: &str| a.get(k).map(String::as_str);
    assert_eq!(get("prometheus.io/scrape"), Some("true"), "{label}: {deployment}: scrape annotation");
    assert_eq!(
        get("prometheus.io/port"),
        Some(port.to_string().as_str()),
        "{label}: {deployment}: the {port_name} port"
    );
    assert_eq!(get("prometheus.io/path"), Some("/metrics"), "{label}: {deployment}: path");
}

/// The autopilot's pod labels, from the direct read of its kustomization.
fn pilot_pod_labels() -> BTreeMap<String, String> {
    let docs = simple_render(&root("deploy/kubernetes/autopilot"));
    let dep = of_kind(&docs, "Deployment").into_iter().next().expect("autopilot Deployment");
    pod_template(dep, "autopilot").1
}

#[test]
fn kubernetes_base_and_overlays_read_directly() {
    let img = image();
    let base = root("deploy/kubernetes/base");
    check_kustomize_fields(&base);
    let b = check_region("base", &simple_render(&base), &img);
    check_network_policy("base", &simple_render(&base), &pilot_pod_labels());
    check_scrape_annotations("base", &simple_render(&base), "flowgate", "flowgate", "admin");
    assert_eq!((b.config_map.as_str(), b.namespace.as_deref()), ("flowgate-config", None));
    // The base's table validates on its own (the overlays' configs check it against theirs).
    let (code, out, err) = flowgate(&["validate", "--table", base.join("table.json").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let mut regions = Vec::new();
    for name in overlay_names() {
        let dir = root(&format!("deploy/kubernetes/overlays/{name}"));
        check_kustomize_fields(&dir);
        regions.push(check_region(&name, &simple_render(&dir), &img));
    }
    check_fleet(&regions);
}

/// (kind, name) of every object, the generated ConfigMap's hash suffix left off.
fn object_ids(docs: &[Value], generated: &str) -> BTreeSet<(String, String)> {
    docs.iter()
        .map(|d| {
            let n = name_of(d);
            let n = if n.starts_with(&format!("{generated}-")) { generated } else { n };
            (s(&d["kind"]).unwrap().to_owned(), n.to_owned())
        })
        .collect()
}

#[test]
#[ignore = "needs kubectl (installed by .ci/run)"]
fn kubernetes_overlays_rendered_by_kubectl() {
    let img = image();
    let mut regions = Vec::new();
    for name in overlay_names() {
        let dir = root(&format!("deploy/kubernetes/overlays/{name}"));
        let docs = kubectl_render(&dir);
        let r = check_region(&name, &docs, &img);
        // Rendered: the overlay's labels are in the policy's podSelector, not in its `from`.
        check_network_policy(&name, &docs, &pilot_pod_labels());
        check_scrape_annotations(&name, &docs, "flowgate", "flowgate", "admin");
        // The generated name carries a hash of the content, so a config change rolls the pods.
        assert!(r.config_map.starts_with("flowgate-config-"), "{name}: ConfigMap {}", r.config_map);
        // The render without kubectl above has the same objects.
        assert_eq!(
            object_ids(&docs, "flowgate-config"),
            object_ids(&simple_render(&dir), "flowgate-config"),
            "{name}: kubectl and the direct read disagree on the objects"
        );
        regions.push(r);
    }
    check_fleet(&regions);
    let base = kubectl_render(&root("deploy/kubernetes/base"));
    check_region("base", &base, &img);
}

// ---------------------------------------------------------------------------------------
// systemd

type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(name: &str, text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{name}: {line}"));
        unit.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    unit
}

fn unit_value<'a>(unit: &'a Unit, key: &str) -> Option<&'a str> {
    unit.get("Service")?.get(key)?.last().map(String::as_str)
}

/// An Exec line's argv, without systemd's `-@:+!` prefixes.
fn unit_argv(unit: &Unit, key: &str) -> Vec<String> {
    let line = unit_value(unit, key).unwrap_or_else(|| panic!("flowgate.service: no {key}"));
    let mut argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    argv[0] = argv[0].trim_start_matches(['-', '@', ':', '+', '!']).to_owned();
    assert!(argv[0].starts_with('/'), "flowgate.service: {key}={line}: an absolute path");
    argv
}

/// systemd's time spans: "45", "45s", "1min 30s".
fn timespan(v: &str) -> Duration {
    v.parse::<u64>()
        .map(Duration::from_secs)
        .unwrap_or_else(|_| humantime::parse_duration(v).unwrap_or_else(|e| panic!("time span {v}: {e}")))
}

/// `kill -HUP $MAINPID` → "SIGHUP".
fn reload_signal(unit: &Unit) -> String {
    let argv = unit_argv(unit, "ExecReload");
    assert!(argv[0].ends_with("/kill"), "ExecReload runs kill: {argv:?}");
    assert_eq!(
        argv.last().map(String::as_str),
        Some("$MAINPID"),
        "ExecReload signals the main process: {argv:?}"
    );
    let sig = match &argv[1..argv.len() - 1] {
        [flag] if flag.starts_with('-') => flag[1..].to_owned(),
        [s, sig] if s == "-s" => sig.clone(),
        other => panic!("ExecReload: kill options {other:?}"),
    };
    if sig.starts_with("SIG") { sig } else { format!("SIG{sig}") }
}

fn stop_signal(unit: &Unit) -> String {
    unit_value(unit, "KillSignal").unwrap_or("SIGTERM").to_owned()
}

/// The text and the parse of `deploy/systemd/NAME`.
fn unit_file(name: &str) -> (String, Unit) {
    let text = read(&root(&format!("deploy/systemd/{name}")));
    let u = parse_unit(name, &text);
    (text, u)
}

/// The proxy's unit.
fn unit() -> (String, Unit) {
    unit_file("flowgate.service")
}

#[test]
fn systemd_unit_matches_the_binary() {
    let (_, u) = unit();
    assert_eq!(unit_value(&u, "Type"), Some("exec"), "Type=exec: flowgate does not send sd_notify");
    let start = unit_argv(&u, "ExecStart");
    let config = serve_config("ExecStart", &start[1..]);
    assert!(config.is_absolute(), "ExecStart: --config {}", config.display());
    match parse_cli("ExecStartPre", &unit_argv(&u, "ExecStartPre")[1..]) {
        Cmd::Validate { config: Some(c), table: None } => {
            assert_eq!(c, config, "ExecStartPre validates what ExecStart serves")
        }
        other => panic!("ExecStartPre: expected `validate --config {}`: {other:?}", config.display()),
    }
    assert_eq!(unit_argv(&u, "ExecStartPre")[0], start[0], "one binary");
    // The signals flowgate handles (checked on a running binary in
    // `admin_paths_and_signals_on_the_binary`): SIGHUP reloads, SIGTERM drains.
    assert_eq!(reload_signal(&u), "SIGHUP");
    assert_eq!(stop_signal(&u), "SIGTERM");

    // The config installed at --config is config/flowgate.toml (deploy/systemd/README.md).
    let readme = read(&root("deploy/systemd/README.md"));
    assert_eq!(
        readme.lines().filter(|l| !l.trim().is_empty()).count(),
        3,
        "deploy/systemd/README.md: three lines"
    );
    assert!(
        readme.contains(&format!("config/flowgate.toml {}", config.display())),
        "deploy/systemd/README.md installs the config at {}",
        config.display()
    );
    let cfg = Config::load(&root("config/flowgate.toml")).unwrap_or_else(|e| panic!("{e:?}"));
    let (delay, timeout) = drain_secs(&cfg);
    let stop = timespan(unit_value(&u, "TimeoutStopSec").expect("TimeoutStopSec")).as_secs_f64();
    assert!(
        stop > delay + timeout,
        "TimeoutStopSec {stop} s must exceed [drain] delay {delay} + timeout {timeout}"
    );
    let nofile: u64 = unit_value(&u, "LimitNOFILE").expect("LimitNOFILE").parse().expect("LimitNOFILE");
    assert!(
        nofile > 2 * cfg.limits.max_connections as u64,
        "LimitNOFILE: a client and an upstream socket per connection"
    );

    // State: the one writable folder, the same path as in the image and the pods.
    let state = format!("/var/lib/{}", unit_value(&u, "StateDirectory").expect("StateDirectory"));
    assert!(
        readme.contains(&format!("state_dir = \"{state}\"")),
        "deploy/systemd/README.md: state_dir = \"{state}\""
    );
    // (The image and the pods mount their config's state_dir: checked in their tests.)
    for other in ["deploy/docker/flowgate.toml", "deploy/kubernetes/base/flowgate.toml"] {
        let c = Config::load(&root(other)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            c.admin.state_dir.as_deref(),
            Some(Path::new(&state)),
            "{other}: one state_dir everywhere"
        );
    }

    // Not root, and the usual hardening.
    assert!(
        unit_value(&u, "DynamicUser") == Some("yes")
            || unit_value(&u, "User").is_some_and(|u| u != "root" && u != "0"),
        "DynamicUser=yes or a dedicated User="
    );
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(unit_value(&u, k), Some(v), "flowgate.service: {k}={v}");
    }
}

#[test]
#[ignore = "needs systemd-analyze (installed by .ci/run)"]
fn systemd_analyze_verify_passes() {
    for name in ["flowgate.service", "flowgate-autopilot.service"] {
        systemd_analyze_verify(name);
    }
}

/// `systemd-analyze verify` passes on deploy/systemd/NAME, and catches a misspelt key and a
/// missing binary in it.
fn systemd_analyze_verify(name: &str) {
    let (text, u) = unit_file(name);
    // verify checks that every Exec binary exists: point them at the one cargo built.
    let installed = &unit_argv(&u, "ExecStart")[0];
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| -> (bool, String) {
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace(installed.as_str(), BIN)).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify"])
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd; .ci/run installs it)");
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        // Only what concerns this unit (the host's own units may have their own warnings).
        let ours: Vec<&str> = said.lines().filter(|l| l.contains("flowgate")).collect();
        (out.status.success(), ours.join("\n"))
    };
    let (ok, said) = verify(&text);
    assert!(ok && said.is_empty(), "systemd-analyze verify {name}:\n{said}");
    // The same run does catch a misspelt key, which it reports but does not fail on.
    let (_, said) = verify(&text.replace("ProtectSystem=strict", "ProtectSytem=strict"));
    assert!(said.contains("ProtectSytem"), "{name}: a misspelt key went unnoticed: {said:?}");
    let (ok, _) = verify(&text.replace(&format!("ExecStart={installed}"), "ExecStart=/nonexistent/flowgate"));
    assert!(!ok, "{name}: a missing binary went unnoticed");
}

// ---------------------------------------------------------------------------------------
// The running binary: probe paths and signals named by the deploy files

fn probe(url: &str) -> i32 {
    flowgate(&["probe", "--timeout", "2s", url]).0
}

#[test]
fn admin_paths_and_signals_on_the_binary() {
    let img = image();
    let (_, u) = unit();
    let origin: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let env = [("FLOWGATE_ADMIN_TOKEN", "deploy-test-token")];
    let drain = "[drain]\ndelay = \"1s\"\ntimeout = \"5s\"\n";
    let mut p = support::ProxyProcess::spawn_env(&support::config_text(origin, drain), &env);
    let admin = p.admin;

    // The probe paths of the Deployment (READY_PATH, LIVE_PATH) answer 2xx; a path the
    // binary does not serve does not, so `probe` tells them apart.
    for path in [READY_PATH, LIVE_PATH] {
        assert_eq!(probe(&format!("http://{admin}{path}")), 0, "{path} on the running binary");
    }
    assert_ne!(probe(&format!("http://{admin}/readyz-renamed")), 0, "probe exits 0 on a 404");

    // The Dockerfile's HEALTHCHECK as written, pointed at this binary and its admin port.
    assert!(probe_command_passes(&img.healthcheck, admin), "HEALTHCHECK {:?}", img.healthcheck);

    // The unit's reload signal re-reads the config and the process goes on.
    let reload = reload_signal(&u);
    p.signal(reload.trim_start_matches("SIG"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut reloaded = false;
    while std::time::Instant::now() < deadline && !reloaded {
        if let Ok(line) = p.log.recv_timeout(Duration::from_millis(200)) {
            reloaded = line.contains("config reloaded");
        }
    }
    assert!(reloaded, "{reload} did not reload the config");
    assert!(p.child.try_wait().unwrap().is_none(), "{reload} stopped the process");
    assert_eq!(probe(&format!("http://{admin}{READY_PATH}")), 0, "ready after {reload}");

    // The stop signal of the unit and the image (one and the same) drains: /readyz turns
    // non-2xx at once while the admin listener still answers, then the process exits 0.
    let stop = stop_signal(&u);
    assert_eq!(stop, img.stop_signal, "the unit and the image stop flowgate the same way");
    p.signal(stop.trim_start_matches("SIG"));
    let deadline = std::time::Instant::now() + Duration::from_millis(900);
    let mut unready = false;
    while std::time::Instant::now() < deadline && !unready {
        unready = probe(&format!("http://{admin}{READY_PATH}")) != 0
            && probe(&format!("http://{admin}{LIVE_PATH}")) == 0;
    }
    assert!(unready, "{stop}: {READY_PATH} still 2xx (or {LIVE_PATH} down) during [drain] delay");
    let status = p
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("{stop}: still running after the drain"));
    assert!(status.success(), "{stop}: exit {status}");
}

// ---------------------------------------------------------------------------------------
// The autopilot: deploy/kubernetes/autopilot and deploy/systemd/flowgate-autopilot.service

/// The route of the autopilot's listener that its probes use, and the prefix of its
/// metrics (`src/autopilot/server.rs`); `autopilot_command_lines_run_on_the_binary` checks
/// both on a running autopilot.
const AUTOPILOT_HEALTH_PATH: &str = "/healthz";
const AUTOPILOT_METRICS_PREFIX: &str = "flowgate_autopilot_";

/// `autopilot [OPTIONS]` (not `pause` or `resume`), through the binary's parser.
fn autopilot_args(what: &str, args: &[String]) -> AutopilotArgs {
    // The parser reads --state-file from this variable too: it must not fill in for the file.
    assert!(
        std::env::var_os("FLOWGATE_AUTOPILOT_STATE").is_none(),
        "unset FLOWGATE_AUTOPILOT_STATE to run these tests: the parser would take it for {what}'s --state-file"
    );
    match parse_cli(what, args) {
        Cmd::Autopilot(AutopilotCmd { switch: None, run }) => run,
        other => panic!("{what}: expected `autopilot --fleet FILE ...`, got {other:?}"),
    }
}

/// An autopilot as a deploy file runs it.
#[derive(Debug)]
struct Pilot {
    what: String,
    /// The arguments after the binary.
    args: Vec<String>,
    run: AutopilotArgs,
    fleet: PathBuf,
    state_file: PathBuf,
    listen: SocketAddr,
    /// FLOWGATE_AUTOPILOT_STATE as a command run beside it sees it (kubectl exec).
    state_env: Option<PathBuf>,
    /// Its health checks, exec form.
    probes: Vec<Vec<String>>,
    /// How long it is given to exit after SIGTERM before it is killed.
    stop_within: Duration,
}

/// What every autopilot command line must say: the fleet file and the state file by
/// absolute path, the state file not the default beside the fleet file (that folder is
/// read-only wherever the fleet file is deployed: a ConfigMap, /etc under
/// ProtectSystem=strict), and a socket address to listen on.
fn pilot(what: &str, args: &[String]) -> Pilot {
    let run = autopilot_args(what, args);
    let fleet = run.fleet.clone().unwrap_or_else(|| panic!("{what}: no --fleet"));
    assert!(fleet.is_absolute(), "{what}: --fleet {} is relative", fleet.display());
    let state_file = run.state_file.clone().unwrap_or_else(|| {
        panic!(
            "{what}: no --state-file: the default, {}, is beside the fleet file, which is read-only",
            switch::default_path(&fleet).display()
        )
    });
    assert!(state_file.is_absolute(), "{what}: --state-file {} is relative", state_file.display());
    assert_ne!(
        state_file.parent(),
        fleet.parent(),
        "{what}: --state-file {} is beside the fleet file, which is read-only",
        state_file.display()
    );
    let listen = run.listen.parse().unwrap_or_else(|e| panic!("{what}: --listen {}: {e}", run.listen));
    Pilot {
        what: what.to_owned(),
        args: args.to_vec(),
        run,
        fleet,
        state_file,
        listen,
        state_env: None,
        probes: Vec::new(),
        stop_within: Duration::ZERO,
    }
}

/// What the autopilot's kustomization renders, for the checks against the proxies'.
#[derive(Debug)]
struct RenderedPilot {
    pilot: Pilot,
    fleet: FleetFile,
    config_map: String,
    /// The Secret (name, key) of its token.
    token_secret: (String, String),
    pod_labels: BTreeMap<String, String>,
    image: String,
}

/// Checks the autopilot's objects against the binary and the image. The rules:
/// - one Deployment of one replica, Recreate, nothing that scales it: never two autopilots
///   (each would act);
/// - the container runs the image's ENTRYPOINT with `autopilot ...` ([`pilot`]); --fleet in
///   a read-only mount of a rendered ConfigMap that has the file, a fleet file; --state-file
///   in a writable emptyDir or rendered volume claim, and FLOWGATE_AUTOPILOT_STATE, if set,
///   the same file;
/// - --listen on 0.0.0.0, its port the one container port; Services select the pod, target
///   that port, and are ClusterIP (POST /v1/pause is on it);
/// - readiness and liveness run the image's `flowgate probe` on loopback, the --listen
///   port's AUTOPILOT_HEALTH_PATH, within the probe's timeoutSeconds;
/// - the fleet file's token_env from a Secret; no hook flags when the image has no shell
///   (hooks run with `sh -c`);
/// - the container rules of the proxies ([`check_container`]); one namespace, created.
fn check_autopilot(label: &str, docs: &[Value], img: &Image) -> RenderedPilot {
    let deps = of_kind(docs, "Deployment");
    assert_eq!(deps.len(), 1, "{label}: one Deployment");
    let dep = deps[0];
    let what = format!("{label}: Deployment {}", name_of(dep));
    assert_eq!(
        dep["spec"]["replicas"].as_u64(),
        Some(1),
        "{what}: replicas: 1 (two autopilots would each act)"
    );
    assert_eq!(
        s(&dep["spec"]["strategy"]["type"]),
        Some("Recreate"),
        "{what}: strategy Recreate (a rolling update runs two autopilots for a while)"
    );
    assert!(of_kind(docs, "HorizontalPodAutoscaler").is_empty(), "{label}: nothing scales the autopilot");
    let (pod, pod_labels) = pod_template(dep, &what);
    let containers = seq(&pod["containers"]);
    assert_eq!(containers.len(), 1, "{what}: one container");
    let c = &containers[0];

    // The command line, through the binary's parser.
    assert!(
        c["command"].is_null(),
        "{what}: no command: the image's ENTRYPOINT ({}) is the binary",
        img.binary
    );
    let mut p = pilot(&format!("{what} args"), &strings(&c["args"], &what));

    // The fleet file, from a read-only ConfigMap.
    let fleet_dir = p.fleet.parent().unwrap();
    let (cm_mount, cm_vol) = mount_at(&what, pod, c, fleet_dir).unwrap_or_else(|| {
        panic!("{what}: nothing is mounted at {} (the --fleet folder)", fleet_dir.display())
    });
    assert_eq!(cm_mount["readOnly"].as_bool(), Some(true), "{what}: mount the fleet file read-only");
    let config_map = s(&cm_vol["configMap"]["name"])
        .unwrap_or_else(|| panic!("{what}: {} is not a ConfigMap volume", fleet_dir.display()))
        .to_owned();
    let files = config_map_data(&format!("{what} (mounted at {})", fleet_dir.display()), docs, &config_map);
    let key = p.fleet.file_name().unwrap().to_str().unwrap();
    let text = files.get(key).unwrap_or_else(|| {
        panic!("{what}: ConfigMap {config_map} has no {key} for --fleet {}", p.fleet.display())
    });
    let fleet = FleetFile::parse(&p.fleet, text).unwrap_or_else(|e| panic!("{label}: {e}"));

    // The state file, on a writable volume.
    let state_dir = p.state_file.parent().unwrap();
    let (state_mount, state_vol) = mount_at(&what, pod, c, state_dir).unwrap_or_else(|| {
        panic!("{what}: nothing is mounted at {} (the --state-file folder)", state_dir.display())
    });
    assert!(
        state_mount["readOnly"].as_bool() != Some(true),
        "{what}: the --state-file folder must be writable"
    );
    if let Some(claim) = s(&state_vol["persistentVolumeClaim"]["claimName"]) {
        assert!(
            of_kind(docs, "PersistentVolumeClaim").iter().any(|d| name_of(d) == claim),
            "{what}: the volume claim {claim} is not rendered"
        );
    } else {
        assert!(
            !state_vol["emptyDir"].is_null(),
            "{what}: the --state-file folder {} is an emptyDir or a volume claim",
            state_dir.display()
        );
    }
    let env = seq(&c["env"]);
    p.state_env = env.iter().find(|e| s(&e["name"]) == Some("FLOWGATE_AUTOPILOT_STATE")).map(|e| {
        PathBuf::from(
            s(&e["value"]).unwrap_or_else(|| panic!("{what}: FLOWGATE_AUTOPILOT_STATE: a literal value")),
        )
    });
    if let Some(state_env) = &p.state_env {
        assert_eq!(
            state_env, &p.state_file,
            "{what}: FLOWGATE_AUTOPILOT_STATE is not --state-file: `autopilot pause` run in the pod would flip another switch"
        );
    }

    // The token, and hooks only where there is a shell to run them.
    let token_secret = token_secret(&what, c, &fleet.token_env);
    if img.distroless {
        for (flag, hook) in
            [("--before-shift", &p.run.before_shift), ("--dns", &p.run.dns), ("--notify", &p.run.notify)]
        {
            assert!(hook.is_none(), "{what}: {flag}: hooks run with `sh -c`, and the image has no shell");
        }
    }

    // The listener: its port, its probes, its Services.
    assert_unspecified(&what, "--listen", p.listen);
    let ports = container_ports(&what, c);
    assert_eq!(
        ports.values().copied().collect::<Vec<_>>(),
        [p.listen.port()],
        "{what}: the one container port is --listen's"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let argv = strings(&c[probe]["exec"]["command"], &what);
        assert!(!argv.is_empty(), "{what}: {probe} runs `flowgate probe` (exec)");
        let within = Duration::from_secs(c[probe]["timeoutSeconds"].as_u64().unwrap_or(1));
        let pw = format!("{what}: {probe}");
        check_probe_command(&pw, &argv, &img.binary, p.listen.port(), AUTOPILOT_HEALTH_PATH, within);
        p.probes.push(argv);
    }
    let services = of_kind(docs, "Service");
    assert!(!services.is_empty(), "{label}: no Service for the autopilot's listener");
    for svc in services {
        let sw = format!("{label}: Service {}", name_of(svc));
        assert!(
            selects(&labels(&svc["spec"]["selector"]), &pod_labels),
            "{sw}: the selector does not match the pod's labels"
        );
        let kind = s(&svc["spec"]["type"]).unwrap_or("ClusterIP");
        assert_eq!(kind, "ClusterIP", "{sw}: a {kind} Service exposes POST /v1/pause outside the cluster");
        assert!(!service_ports(&sw, svc, &ports).is_empty(), "{sw}: no ports");
    }

    check_container(&what, pod, c, img);
    p.stop_within = Duration::from_secs_f64(grace_secs(pod));
    one_namespace(label, docs);
    let image = s(&c["image"]).unwrap_or_else(|| panic!("{what}: no image")).to_owned();
    RenderedPilot { pilot: p, fleet, config_map, token_secret, pod_labels, image }
}

/// The fleet file is config/fleet.toml's fleet (which `check_fleet` holds against the
/// overlays).
fn assert_same_fleet(what: &str, fleet: &FleetFile) {
    let repo = FleetFile::load(&root("config/fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    let regions = |f: &FleetFile| -> Vec<(String, Vec<String>, f64)> {
        f.regions.iter().map(|(n, r)| (n.clone(), r.admin.clone(), r.capacity_rps)).collect()
    };
    assert_eq!(fleet.token_env, repo.token_env, "{what}: token_env against config/fleet.toml");
    assert_eq!(regions(fleet), regions(&repo), "{what}: the regions against config/fleet.toml");
}

/// The autopilot against one rendering of the proxies (`proxies`, whose config is `cfg`):
/// its fleet file is config/fleet.toml's; it sends the token the proxies check, from the
/// same Secret; it runs their image; none of their selectors picks its pod (so the two can
/// share a namespace).
fn check_pilot_with_proxies(p: &RenderedPilot, label: &str, proxies: &[Value], cfg: &Config) {
    assert_same_fleet(&format!("autopilot: ConfigMap {}", p.config_map), &p.fleet);
    assert_eq!(
        p.fleet.token_env, cfg.admin.token_env,
        "autopilot: the fleet file's token_env is not {label}'s [admin] token_env"
    );
    let dep = of_kind(proxies, "Deployment")[0];
    let c = seq(&dep["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| s(&c["name"]) == Some("flowgate"))
        .expect("the proxies' container");
    assert_eq!(
        token_secret(label, c, &cfg.admin.token_env),
        p.token_secret,
        "autopilot: its token is not from the proxies' Secret ({label})"
    );
    assert_eq!(s(&c["image"]), Some(p.image.as_str()), "autopilot: not the image of {label}'s proxies");
    for d in proxies {
        for sel in [&d["spec"]["selector"], &d["spec"]["selector"]["matchLabels"]] {
            assert!(
                !selects(&labels(sel), &p.pod_labels),
                "{label}: {} {}'s selector picks the autopilot's pod",
                s(&d["kind"]).unwrap_or("?"),
                name_of(d)
            );
        }
    }
}

fn kustomization(dir: &Path) -> Value {
    serde_yaml_ng::from_str(&read(&dir.join("kustomization.yaml"))).expect("kustomization.yaml")
}

#[test]
fn kubernetes_autopilot_read_directly() {
    let img = image();
    let dir = root("deploy/kubernetes/autopilot");
    check_kustomize_fields(&dir);
    let p = check_autopilot("autopilot", &simple_render(&dir), &img);
    assert_eq!(p.config_map, "flowgate-autopilot-config");
    check_scrape_annotations("autopilot", &simple_render(&dir), "flowgate-autopilot", "autopilot", "http");
    let base = simple_render(&root("deploy/kubernetes/base"));
    let b = check_region("base", &base, &img);
    check_pilot_with_proxies(&p, "base", &base, &b.cfg);
    // The direct read applies no images: the autopilot's are every overlay's.
    for name in overlay_names() {
        assert_eq!(
            kustomization(&dir)["images"],
            kustomization(&root(&format!("deploy/kubernetes/overlays/{name}")))["images"],
            "autopilot: images: against overlays/{name}'s (one release everywhere)"
        );
    }
}

#[test]
#[ignore = "needs kubectl (installed by .ci/run)"]
fn kubernetes_autopilot_rendered_by_kubectl() {
    let img = image();
    let dir = root("deploy/kubernetes/autopilot");
    let docs = kubectl_render(&dir);
    let p = check_autopilot("autopilot", &docs, &img);
    // The generated name carries a hash of the content, so a fleet file change rolls the pod.
    assert!(p.config_map.starts_with("flowgate-autopilot-config-"), "ConfigMap {}", p.config_map);
    assert_eq!(
        object_ids(&docs, "flowgate-autopilot-config"),
        object_ids(&simple_render(&dir), "flowgate-autopilot-config"),
        "autopilot: kubectl and the direct read disagree on the objects"
    );
    for name in overlay_names() {
        let region = kubectl_render(&root(&format!("deploy/kubernetes/overlays/{name}")));
        let r = check_region(&name, &region, &img);
        check_pilot_with_proxies(&p, &name, &region, &r.cfg);
    }
}

/// The [Service] keys of the proxy's unit that the autopilot's sets otherwise, by design:
/// its own command line and reload, its own state folder, no capabilities, no file limit.
const UNIT_KEYS_OF_ITS_OWN: [&str; 10] = [
    "ExecStartPre",
    "ExecStart",
    "ExecReload",
    "TimeoutStopSec",
    "RestartSec",
    "EnvironmentFile",
    "StateDirectory",
    "LimitNOFILE",
    "AmbientCapabilities",
    "CapabilityBoundingSet",
];

/// The autopilot's unit: Type=exec, `ExecStart=BINARY autopilot ...` ([`pilot`]) with the
/// state file in StateDirectory (the one writable folder), ExecReload sending SIGHUP (it
/// re-reads the fleet file), SIGTERM, Restart=on-failure, no capability for a port above 1023.
fn unit_pilot(u: &Unit) -> Pilot {
    let what = "flowgate-autopilot.service";
    assert_eq!(unit_value(u, "Type"), Some("exec"), "{what}: Type=exec: flowgate does not send sd_notify");
    let start = unit_argv(u, "ExecStart");
    let mut p = pilot(&format!("{what}: ExecStart"), &start[1..]);
    let state_dir = format!("/var/lib/{}", unit_value(u, "StateDirectory").expect("StateDirectory"));
    assert_eq!(
        p.state_file.parent(),
        Some(Path::new(&state_dir)),
        "{what}: --state-file {} is not in StateDirectory ({state_dir}), the one writable folder",
        p.state_file.display()
    );
    assert_eq!(
        reload_signal(u),
        "SIGHUP",
        "{what}: ExecReload sends SIGHUP (the autopilot re-reads its fleet file on it)"
    );
    assert_eq!(stop_signal(u), "SIGTERM", "{what}: the autopilot exits 0 on SIGTERM");
    assert_eq!(unit_value(u, "Restart"), Some("on-failure"), "{what}: Restart=on-failure");
    if p.listen.port() >= 1024 {
        assert_eq!(
            unit_value(u, "CapabilityBoundingSet"),
            Some(""),
            "{what}: port {}: no capabilities",
            p.listen.port()
        );
        assert!(
            unit_value(u, "AmbientCapabilities").is_none(),
            "{what}: port {}: no capabilities",
            p.listen.port()
        );
    }
    p.stop_within = timespan(unit_value(u, "TimeoutStopSec").unwrap_or("90s"));
    p
}

#[test]
fn systemd_autopilot_unit_matches_the_binary_and_the_proxy_unit() {
    let (_, u) = unit_file("flowgate-autopilot.service");
    let (_, proxy) = unit();
    let p = unit_pilot(&u);
    let what = "flowgate-autopilot.service";
    assert_eq!(
        unit_argv(&u, "ExecStart")[0],
        unit_argv(&proxy, "ExecStart")[0],
        "{what}: the proxy's binary"
    );

    // Sandboxed like the proxy: every other key of its unit, the same.
    for (section, keys) in &proxy {
        for (k, v) in keys {
            if section == "Service" && UNIT_KEYS_OF_ITS_OWN.contains(&k.as_str()) || k == "Description" {
                continue;
            }
            assert_eq!(
                u.get(section).and_then(|s| s.get(k)),
                Some(v),
                "{what}: [{section}] {k} as in flowgate.service"
            );
        }
    }
    // The proxy's token file, required: without the token every push is refused.
    let env_file = unit_value(&u, "EnvironmentFile").expect("EnvironmentFile");
    assert!(!env_file.starts_with('-'), "{what}: EnvironmentFile={env_file} is required (the token)");
    assert_eq!(
        env_file,
        unit_value(&proxy, "EnvironmentFile").unwrap().trim_start_matches('-'),
        "{what}: the proxy's token file"
    );
    // The fleet file installed at --fleet is config/fleet.toml, whose token is the proxies'.
    let readme = read(&root("deploy/systemd/README.md"));
    for said in [
        format!("config/fleet.toml {}", p.fleet.display()),
        format!("deploy/systemd/{what}"),
        format!("--autopilot {}", p.listen),
    ] {
        assert!(readme.contains(&said), "deploy/systemd/README.md: {said}");
    }
    let fleet = FleetFile::load(&root("config/fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    let cfg = Config::load(&root("config/flowgate.toml")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(fleet.token_env, cfg.admin.token_env, "config/fleet.toml's token_env is not the proxies'");
    // One layout everywhere: the pods' fleet file, state file and port.
    let k =
        check_autopilot("autopilot", &simple_render(&root("deploy/kubernetes/autopilot")), &image()).pilot;
    assert_eq!(
        (&k.fleet, &k.state_file, k.listen.port()),
        (&p.fleet, &p.state_file, p.listen.port()),
        "{what} against deploy/kubernetes/autopilot: --fleet, --state-file, --listen port"
    );
}

/// GET through the support client, on a runtime of its own; (status, body).
fn http_get(url: &str) -> (http::StatusCode, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, _, body) = rt.block_on(async { support::get(&support::h1_client(), url).await });
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `GET /v1/state` until its `paused` is `paused`.
fn wait_paused(pilot: &AutopilotProcess, paused: bool, limit: Duration) -> bool {
    poll_blocking(limit, Duration::from_millis(100), || {
        let (_, body) = http_get(&format!("http://{}/v1/state", pilot.listen));
        let now = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["paused"].as_bool());
        if now == Some(paused) { Ok(()) } else { Err(()) }
    })
    .is_ok()
}

/// Runs a deploy file's autopilot command line on the built binary, its paths under a
/// temporary folder (the fleet file where --fleet says, each region of `fleet` at a
/// loopback port where nothing listens; the state folder empty, as a new volume or
/// StateDirectory is) and --listen on a free loopback port. Then what the deploy file
/// relies on: it reads the fleet (a JSON line on stdout per region), its probes pass,
/// /metrics serves its families, a pause lands in --state-file and a resume written there
/// is read, and SIGTERM ends it with 0 within the time the deploy file gives it.
fn run_as_deployed(p: &Pilot, fleet: &FleetFile) {
    let what = &p.what;
    let dir = tempfile::tempdir().unwrap();
    let here = |path: &str| match path.strip_prefix('/') {
        Some(rel) => dir.path().join(rel).display().to_string(),
        None => path.to_owned(),
    };
    let mut text = format!("token_env = \"{}\"\n", fleet.token_env);
    for (name, r) in &fleet.regions {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        text.push_str(&format!(
            "[regions.{name}]\nadmin = [\"{closed}\"]\ncapacity_rps = {}\n",
            r.capacity_rps
        ));
    }
    let fleet_file = PathBuf::from(here(p.fleet.to_str().unwrap()));
    std::fs::create_dir_all(fleet_file.parent().unwrap()).unwrap();
    std::fs::write(&fleet_file, text).unwrap();
    let state = PathBuf::from(here(p.state_file.to_str().unwrap()));
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();

    // Its arguments but `autopilot`, --fleet and --listen (the helper passes its own).
    let mut args = Vec::new();
    let mut it = p.args.iter().skip(1);
    while let Some(a) = it.next() {
        let (flag, value) = a.split_once('=').map_or((a.as_str(), None), |(f, v)| (f, Some(v)));
        if flag == "--fleet" || flag == "--listen" {
            if value.is_none() {
                it.next();
            }
            continue;
        }
        args.push(match value {
            Some(v) => format!("{flag}={}", here(v)),
            None => here(a),
        });
    }
    assert_eq!(
        fleet.token_env, "FLOWGATE_ADMIN_TOKEN",
        "{what}: the test's autopilot gets its token in FLOWGATE_ADMIN_TOKEN"
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut pilot = AutopilotProcess::spawn(&fleet_file, &args);
    let token = [("FLOWGATE_ADMIN_TOKEN", support::outage::TOKEN)];

    // It reads the fleet: a decision on every region, one JSON line each on stdout.
    let judged = || -> BTreeSet<String> {
        pilot.decisions().iter().filter_map(|d| d["region"].as_str().map(str::to_owned)).collect()
    };
    let _ = poll_blocking(Duration::from_secs(15), Duration::from_millis(100), || {
        if judged().len() < fleet.regions.len() { Err(()) } else { Ok(()) }
    });
    assert_eq!(
        judged(),
        fleet.regions.keys().cloned().collect(),
        "{what}: no decision on every region:\n{}",
        pilot.dump()
    );

    // Its probes as written, and the path they use, on the running autopilot.
    for argv in &p.probes {
        assert!(probe_command_passes(argv, pilot.listen), "{what}: {argv:?}:\n{}", pilot.dump());
    }
    assert_eq!(
        probe(&format!("http://{}{AUTOPILOT_HEALTH_PATH}", pilot.listen)),
        0,
        "{what}: {AUTOPILOT_HEALTH_PATH}"
    );
    assert_ne!(probe(&format!("http://{}/healthz-renamed", pilot.listen)), 0, "probe exits 0 on a 404");
    let (status, metrics) = http_get(&format!("http://{}/metrics", pilot.listen));
    assert!(
        status.is_success() && metrics.lines().any(|l| l.starts_with(AUTOPILOT_METRICS_PREFIX)),
        "{what}: /metrics {status} has no {AUTOPILOT_METRICS_PREFIX} families"
    );

    // A pause through its listener (the token's) lands in --state-file, nothing beside the
    // fleet file, and it reads the switch from there.
    let addr = pilot.listen.to_string();
    let fleet_arg = fleet_file.to_str().unwrap();
    let (code, out, err) =
        flowgate_env(&["autopilot", "pause", "--fleet", fleet_arg, "--autopilot", &addr], &token);
    assert_eq!(code, 0, "{what}: autopilot pause --autopilot {addr}:\n{out}{err}");
    assert!(
        switch::load(&state).unwrap().paused,
        "{what}: the pause is not in --state-file {}",
        state.display()
    );
    assert!(!switch::default_path(&fleet_file).exists(), "{what}: a state file beside the fleet file");
    let round = p.run.interval * 3 + Duration::from_secs(5);
    assert!(wait_paused(&pilot, true, round), "{what}: /v1/state is not paused:\n{}", pilot.dump());
    // A resume written to the file, as `flowgate autopilot resume` run beside it does (in the
    // pod with its FLOWGATE_AUTOPILOT_STATE, on the host with --state-file).
    let state_arg = state.to_str().unwrap();
    let (code, out, err) = match &p.state_env {
        Some(env) => {
            let env = here(env.to_str().unwrap());
            flowgate_env(
                &["autopilot", "resume", "--fleet", fleet_arg],
                &[("FLOWGATE_AUTOPILOT_STATE", &env)],
            )
        }
        None => flowgate(&["autopilot", "resume", "--fleet", fleet_arg, "--state-file", state_arg]),
    };
    assert_eq!(code, 0, "{what}: autopilot resume:\n{out}{err}");
    assert!(
        wait_paused(&pilot, false, round),
        "{what}: the resume in {state_arg} was not read:\n{}",
        pilot.dump()
    );

    // SIGTERM: exit 0, well within the time before SIGKILL.
    let t0 = Instant::now();
    let status = pilot.terminate().unwrap_or_else(|| panic!("{what}: still running 10 s after SIGTERM"));
    let took = t0.elapsed();
    assert!(status.success(), "{what}: SIGTERM: exit {status}:\n{}", pilot.dump());
    assert!(
        took < p.stop_within / 2,
        "{what}: SIGTERM took {took:?}; it is killed after {:?}",
        p.stop_within
    );
}

#[test]
fn autopilot_command_lines_run_on_the_binary() {
    let k8s =
        check_autopilot("autopilot", &simple_render(&root("deploy/kubernetes/autopilot")), &image()).pilot;
    let (_, u) = unit_file("flowgate-autopilot.service");
    let unit = unit_pilot(&u);
    let fleet = FleetFile::load(&root("config/fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    std::thread::scope(|s| {
        s.spawn(|| run_as_deployed(&k8s, &fleet));
        s.spawn(|| run_as_deployed(&unit, &fleet));
    });
}

// ---------------------------------------------------------------------------------------
// deploy/etcd: the store's members, their unit, and flowgate's [store]

/// The example's regions, one member each, in the order of `[store] etcd` (requests start
/// with the first: in flowgate-store.toml, its own region's member).
const ETCD_REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// The etcd 3.4 config file keys the member files may use, and those of their
/// `*-transport-security` tables: etcd ignores a key it does not know, so a misspelt
/// `client-cert-auth` would go unnoticed by etcd (each top-level key is also checked
/// against `etcd --help` where etcd is installed).
const ETCD_KEYS: [&str; 19] = [
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-token",
    "initial-cluster-state",
    "client-transport-security",
    "peer-transport-security",
    "heartbeat-interval",
    "election-timeout",
    "pre-vote",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "quota-backend-bytes",
    "logger",
    "log-outputs",
];
const ETCD_TLS_KEYS: [&str; 5] = ["cert-file", "key-file", "client-cert-auth", "trusted-ca-file", "auto-tls"];

/// A member file's string at `key`.
fn etcd_str<'a>(what: &str, m: &'a Value, key: &str) -> &'a str {
    s(&m[key]).unwrap_or_else(|| panic!("{what}: {key}: a string, got {:?}", m[key]))
}

/// A member file's URL list at `key` (etcd takes them comma-separated), every one https.
fn etcd_urls(what: &str, m: &Value, key: &str) -> Vec<http::Uri> {
    etcd_str(what, m, key)
        .split(',')
        .map(|u| {
            let uri: http::Uri = u.trim().parse().unwrap_or_else(|e| panic!("{what}: {key}: {u}: {e}"));
            assert_eq!(uri.scheme_str(), Some("https"), "{what}: {key}: {u}: TLS on every port");
            uri
        })
        .collect()
}

/// `[store]` of a flowgate TOML file, read as plain TOML (the binary's own check needs the
/// `etcd` feature): (etcd URLs, lease_ttl).
fn store_table(what: &str, path: &Path) -> (Vec<String>, Duration) {
    let doc: toml::Value = toml::from_str(&read(path)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let store = doc.get("store").unwrap_or_else(|| panic!("{what}: no [store]"));
    let etcd = store
        .get("etcd")
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("{what}: [store] etcd: a list"))
        .iter()
        .map(|u| u.as_str().unwrap_or_else(|| panic!("{what}: [store] etcd: {u:?}")).to_owned())
        .collect();
    for k in ["ca", "cert", "key"] {
        assert!(
            store.get(k).and_then(toml::Value::as_str).is_some_and(|v| !v.is_empty()),
            "{what}: [store] {k}: the members take TLS clients with a certificate only"
        );
    }
    assert_eq!(
        store.get("prefix").and_then(toml::Value::as_str),
        Some("/flowgate"),
        "{what}: [store] prefix"
    );
    let ttl = store.get("lease_ttl").and_then(toml::Value::as_str).unwrap_or("10s");
    (etcd, humantime::parse_duration(ttl).unwrap_or_else(|e| panic!("{what}: lease_ttl {ttl}: {e}")))
}

#[test]
fn etcd_example_members_agree_and_flowgate_configs_point_at_them() {
    let dir = root("deploy/etcd");
    let what = "etcd-member.service";
    let unit = parse_unit(what, &read(&dir.join(what)));
    assert_eq!(
        unit_argv(&unit, "ExecStart"),
        ["/usr/bin/etcd", "--config-file", "/etc/etcd/etcd.yml"],
        "{what}: ExecStart"
    );
    assert_eq!(unit_value(&unit, "Type"), Some("notify"), "{what}: etcd sends sd_notify READY");
    assert_eq!(unit_value(&unit, "User"), Some("etcd"), "{what}: User=etcd");
    assert_eq!(unit_value(&unit, "Restart"), Some("always"), "{what}: Restart=always");
    let state_dir = format!("/var/lib/{}", unit_value(&unit, "StateDirectory").expect("StateDirectory"));
    let help = support::etcd::available().then(|| {
        let out = Command::new(support::etcd::ETCD).arg("--help").output().expect("etcd --help");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    });

    let mut members = Vec::new();
    for region in ETCD_REGIONS {
        let file = format!("etcd-{region}.yml");
        let what = format!("deploy/etcd/{file}");
        let m: Value =
            serde_yaml_ng::from_str(&read(&dir.join(&file))).unwrap_or_else(|e| panic!("{what}: {e}"));
        for (k, v) in m.as_mapping().unwrap_or_else(|| panic!("{what}: a mapping")) {
            let k = s(k).unwrap_or_else(|| panic!("{what}: key {k:?}"));
            assert!(
                ETCD_KEYS.contains(&k),
                "{what}: {k} is not an etcd 3.4 config key (etcd would ignore it)"
            );
            // Each key is a flag's name, but the TLS tables': theirs are.
            let mut flags = vec![k];
            if k.ends_with("-transport-security") {
                flags = v
                    .as_mapping()
                    .unwrap_or_else(|| panic!("{what}: {k}: a mapping"))
                    .keys()
                    .map(|tk| {
                        let tk = s(tk).unwrap_or("?");
                        assert!(ETCD_TLS_KEYS.contains(&tk), "{what}: {k}.{tk} is not an etcd 3.4 TLS key");
                        tk
                    })
                    .collect();
            }
            if let Some(help) = &help {
                for f in flags {
                    assert!(help.contains(&format!("--{f} ")), "{what}: {f}: not in `etcd --help`");
                }
            }
        }

        let name = etcd_str(&what, &m, "name").to_owned();
        assert_eq!(name, format!("etcd-{region}"), "{what}: the member of {region}");
        let host = format!("etcd-{region}.example.internal");
        let one = |key: &str, port: u16| {
            let urls = etcd_urls(&what, &m, key);
            assert_eq!(urls.len(), 1, "{what}: {key}: one URL");
            assert_eq!(urls[0].port_u16(), Some(port), "{what}: {key}: port {port}");
            urls[0].clone()
        };
        let client = one("advertise-client-urls", 2379);
        let peer = one("initial-advertise-peer-urls", 2380);
        assert_eq!(client.host(), Some(host.as_str()), "{what}: advertise-client-urls: its region's host");
        assert_eq!(
            peer.host(),
            Some(host.as_str()),
            "{what}: initial-advertise-peer-urls: its region's host"
        );
        one("listen-client-urls", 2379);
        one("listen-peer-urls", 2380);
        assert_eq!(etcd_str(&what, &m, "initial-cluster-state"), "new", "{what}: a new cluster");
        for t in ["client-transport-security", "peer-transport-security"] {
            assert_eq!(m[t]["client-cert-auth"].as_bool(), Some(true), "{what}: {t}: client-cert-auth: true");
            assert_ne!(m[t]["auto-tls"].as_bool(), Some(true), "{what}: {t}: no self-signed auto-tls");
            for f in ["cert-file", "key-file", "trusted-ca-file"] {
                let p = etcd_str(&what, &m[t], f);
                assert!(Path::new(p).is_absolute(), "{what}: {t}.{f}: {p}: an absolute path");
            }
        }
        let data_dir = etcd_str(&what, &m, "data-dir");
        assert_eq!(
            data_dir, state_dir,
            "{what}: data-dir is etcd-member.service's StateDirectory (its one writable folder)"
        );
        members.push((name, client, peer, m));
    }

    // The cluster they form: the same initial-cluster (each member at its advertised peer
    // URL), token and timing in every file.
    let (_, _, _, first) = &members[0];
    let want: BTreeMap<String, String> = members
        .iter()
        .map(|(n, _, p, _)| (n.clone(), p.to_string().trim_end_matches('/').to_owned()))
        .collect();
    for (name, _, _, m) in &members {
        let what = format!("deploy/etcd/{name}.yml");
        for key in ["initial-cluster", "initial-cluster-token", "heartbeat-interval", "election-timeout"] {
            assert_eq!(m[key], first[key], "{what}: {key} differs from {}'s", members[0].0);
        }
        let cluster: BTreeMap<String, String> = etcd_str(&what, m, "initial-cluster")
            .split(',')
            .map(|e| {
                let (n, u) =
                    e.trim().split_once('=').unwrap_or_else(|| panic!("{what}: initial-cluster: {e}"));
                let uri: http::Uri =
                    u.parse().unwrap_or_else(|e| panic!("{what}: initial-cluster: {u}: {e}"));
                assert_eq!(
                    uri.scheme_str(),
                    Some("https"),
                    "{what}: initial-cluster: {u}: TLS on every port"
                );
                (n.to_owned(), u.to_owned())
            })
            .collect();
        assert_eq!(
            cluster, want,
            "{what}: initial-cluster against each member's initial-advertise-peer-urls"
        );
    }
    let election = Duration::from_millis(first["election-timeout"].as_u64().expect("election-timeout"));
    let heartbeat = Duration::from_millis(first["heartbeat-interval"].as_u64().expect("heartbeat-interval"));
    assert!(
        election >= heartbeat * 10,
        "election-timeout {election:?}: at least 10 heartbeats ({heartbeat:?})"
    );

    // flowgate's side: both files name the three members' client URLs, in region order.
    let clients: Vec<String> =
        members.iter().map(|(_, c, _, _)| c.to_string().trim_end_matches('/').to_owned()).collect();
    for file in ["flowgate-store.toml", "fleet-store.toml"] {
        let what = format!("deploy/etcd/{file}");
        let (etcd, lease_ttl) = store_table(&what, &dir.join(file));
        assert_eq!(etcd, clients, "{what}: [store] etcd against the members' advertise-client-urls");
        // etcd grants no lease shorter than 1.5 election timeouts: flowgate's must be longer.
        assert!(
            lease_ttl > election * 3 / 2,
            "{what}: lease_ttl {lease_ttl:?}: etcd lengthens leases under 1.5 election timeouts ({election:?})"
        );
    }
    let doc: toml::Value = toml::from_str(&read(&dir.join("fleet-store.toml"))).expect("fleet-store.toml");
    let regions: BTreeSet<&str> =
        doc["regions"].as_table().expect("[regions]").keys().map(String::as_str).collect();
    assert_eq!(regions, BTreeSet::from(ETCD_REGIONS), "deploy/etcd/fleet-store.toml: a region per member");
    let doc: toml::Value =
        toml::from_str(&read(&dir.join("flowgate-store.toml"))).expect("flowgate-store.toml");
    assert_eq!(
        doc["region"].as_str(),
        Some(ETCD_REGIONS[0]),
        "deploy/etcd/flowgate-store.toml: region: the first member's (its [store] etcd starts there)"
    );
    let peers: BTreeSet<&str> =
        doc["peers"].as_table().expect("[peers]").keys().map(String::as_str).collect();
    assert_eq!(
        peers,
        BTreeSet::from_iter(ETCD_REGIONS[1..].iter().copied()),
        "deploy/etcd/flowgate-store.toml: [peers]: the other members' regions"
    );

    // The binary: it validates the proxy's config and loads the fleet file with their
    // [store] (the TLS files are resolved, not read: they need not exist here), and both
    // name one store; a binary built without the feature refuses them, saying so.
    let config = dir.join("flowgate-store.toml");
    let (code, out, err) = flowgate(&["validate", "--config", config.to_str().unwrap()]);
    #[cfg(feature = "etcd")]
    {
        assert_eq!(code, 0, "flowgate validate --config {}:\n{out}{err}", config.display());
        let cfg = Config::load(&config).unwrap_or_else(|e| panic!("{e:?}"));
        let fleet = FleetFile::load(&dir.join("fleet-store.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.store.is_some(), "flowgate-store.toml: [store]");
        assert_eq!(cfg.store, fleet.store, "flowgate-store.toml and fleet-store.toml: one store");
        assert_eq!(fleet.token_env, cfg.admin.token_env, "fleet-store.toml: token_env is the proxies'");
    }
    #[cfg(not(feature = "etcd"))]
    assert!(
        code != 0 && format!("{out}{err}").contains("--features etcd"),
        "without the etcd feature, flowgate validate must refuse [store] naming the feature:\n{out}{err}"
    );
}

// ---------------------------------------------------------------------------------------
// compose: the two-region quick try

/// The host side of a compose bind mount (`SRC:DST[:MODE]` with SRC a path), resolved
/// against the compose file's folder; `None` for a named volume.
fn bind_source(dir: &Path, volume: &str) -> Option<(PathBuf, String)> {
    let (src, rest) = volume.split_once(':')?;
    let dst = rest.split(':').next().unwrap_or(rest).to_owned();
    (src.starts_with('.') || src.starts_with('/')).then(|| (dir.join(src), dst))
}

/// `host:port` to (host, port).
fn host_port(what: &str, addr: &str) -> (String, u16) {
    let (h, p) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{what}: {addr} has no port"));
    (h.to_owned(), p.parse().unwrap_or_else(|_| panic!("{what}: {addr}: port")))
}

#[test]
fn compose_two_regions_reference_files_that_exist_and_configs_that_validate() {
    let dir = root("deploy/compose");
    let path = dir.join("compose.yaml");
    let mut doc: Value =
        serde_yaml_ng::from_str(&read(&path)).unwrap_or_else(|e| panic!("compose.yaml: {e}"));
    doc.apply_merge().expect("compose.yaml: merge keys");
    let services = doc["services"].as_mapping().expect("compose.yaml: services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    let img = image();
    // Each proxy service: its config (what the image's CMD reads) and that config's region.
    let mut proxies: BTreeMap<String, (Config, toml::Value)> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().expect("service name");
        let what = format!("compose.yaml: services.{name}");
        let mut mounts = BTreeMap::new();
        for v in seq(&svc["volumes"]) {
            let v = s(v).unwrap_or_else(|| panic!("{what}: volumes: short form only"));
            if let Some((src, dst)) = bind_source(&dir, v) {
                assert!(src.exists(), "{what}: mounts {} which does not exist", src.display());
                mounts.insert(dst, src);
            } else {
                let vol = v.split(':').next().unwrap();
                assert!(doc["volumes"].get(vol).is_some(), "{what}: volume {vol} is not declared");
            }
        }
        for dep in seq(&svc["depends_on"]) {
            assert!(names.contains(s(dep).unwrap()), "{what}: depends_on {dep:?}");
        }
        if svc["build"].is_null() {
            assert!(s(&svc["image"]).is_some_and(|i| i.contains(':')), "{what}: a pinned image or a build");
            continue;
        }
        let context = dir.join(s(&svc["build"]["context"]).expect("build context"));
        let dockerfile = context.join(s(&svc["build"]["dockerfile"]).expect("build dockerfile"));
        assert_eq!(
            dockerfile.canonicalize().unwrap(),
            root("deploy/docker/Dockerfile").canonicalize().unwrap(),
            "{what}: built from deploy/docker/Dockerfile"
        );
        assert_eq!(
            context.canonicalize().unwrap(),
            root("").canonicalize().unwrap(),
            "{what}: context is the repository"
        );
        // The image's CMD reads its config at the copied path: the mount replaces it.
        let config = mounts
            .get(&img.config_path.display().to_string())
            .unwrap_or_else(|| panic!("{what}: no config mounted at {}", img.config_path.display()))
            .clone();
        let (code, out, err) = flowgate(&["validate", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{what}: {} does not validate:\n{out}{err}", config.display());
        let cfg = Config::load(&config).unwrap_or_else(|e| panic!("{what}: {e}"));
        // The table the config names, next to it in the container, is mounted there.
        if let Some(table) = &cfg.table {
            let in_container = img.config_path.parent().unwrap().join(table.file_name().unwrap());
            assert!(
                mounts.contains_key(&in_container.display().to_string()),
                "{what}: {} not mounted",
                in_container.display()
            );
        }
        let env = &svc["environment"][cfg.admin.token_env.as_str()];
        assert!(
            s(env).is_some_and(|v| v.contains("${")),
            "{what}: {} comes from the caller's environment",
            cfg.admin.token_env
        );
        let ports = config_ports(&cfg);
        for p in seq(&svc["ports"]) {
            let p = s(p).expect("ports: strings");
            let container: u16 = p.rsplit(':').next().unwrap().parse().expect("container port");
            assert!(
                ports.values().any(|c| *c == container),
                "{what}: publishes {container}, not a listener of {ports:?}"
            );
            if container == cfg.admin.listen.port() {
                assert!(p.starts_with("127.0.0.1:"), "{what}: the admin port is published on loopback only");
            }
        }
        let grace = s(&svc["stop_grace_period"]).map(timespan).expect("stop_grace_period");
        let (delay, timeout) = drain_secs(&cfg);
        assert!(grace.as_secs_f64() > delay + timeout, "{what}: stop_grace_period {grace:?} < the drain");
        let text: toml::Value = toml::from_str(&read(&config)).expect("toml");
        proxies.insert(name.to_owned(), (cfg, text));
    }
    let regions: BTreeSet<&str> = proxies.values().map(|(c, _)| c.region.as_str()).collect();
    assert_eq!(regions.len(), 2, "two regions: {regions:?}");
    for (name, (cfg, text)) in &proxies {
        let what = format!("compose.yaml: services.{name}");
        for (origin, o) in text["origins"].as_table().expect("origins") {
            for ep in o["endpoints"].as_array().expect("endpoints") {
                let (host, _) = host_port(&what, ep.as_str().unwrap());
                assert!(
                    names.contains(host.as_str()) && !proxies.contains_key(&host),
                    "{what}: origin {origin}: {host} is an origin service"
                );
            }
        }
        let others: BTreeSet<&str> = regions.iter().copied().filter(|r| *r != cfg.region).collect();
        let peers: BTreeSet<&str> = cfg.peers.keys().map(String::as_str).collect();
        assert_eq!(peers, others, "{what}: [peers] are the other regions");
        for (peer, p) in &cfg.peers {
            for addr in p.lb.iter().chain(&p.proxies) {
                let (host, port) = host_port(&what, addr);
                let (other, _) = proxies
                    .get(&host)
                    .unwrap_or_else(|| panic!("{what}: peers.{peer}: {host} is no proxy service"));
                assert_eq!(&other.region, peer, "{what}: peers.{peer}: {host} is in {}", other.region);
                assert_eq!(
                    Some(port),
                    other.listen.peer.map(|a| a.port()),
                    "{what}: peers.{peer}: {host}'s peer port"
                );
            }
        }
    }
    // The fleet file reaches each proxy's admin port as compose publishes it.
    let fleet = FleetFile::load(&dir.join("fleet.toml")).unwrap_or_else(|e| panic!("{e}"));
    let fleet_regions: BTreeSet<&str> = fleet.regions.keys().map(String::as_str).collect();
    assert_eq!(fleet_regions, regions, "deploy/compose/fleet.toml: regions");
    for (name, (cfg, _)) in &proxies {
        let published: Vec<String> = seq(&doc["services"][name.as_str()]["ports"])
            .iter()
            .filter_map(s)
            .filter_map(|p| {
                p.rsplit_once(':')
                    .filter(|(_, c)| *c == cfg.admin.listen.port().to_string())
                    .map(|(h, _)| h.to_owned())
            })
            .collect();
        assert_eq!(fleet.regions[&cfg.region].admin, published, "fleet.toml: regions.{}.admin", cfg.region);
    }
    // Prometheus (profile monitoring) scrapes every proxy's admin listener.
    let prom: Value = serde_yaml_ng::from_str(&read(&dir.join("prometheus.yml"))).expect("prometheus.yml");
    let targets: BTreeSet<String> = seq(&prom["scrape_configs"])
        .iter()
        .flat_map(|j| seq(&j["static_configs"]))
        .flat_map(|c| seq(&c["targets"]))
        .filter_map(|t| s(t).map(str::to_owned))
        .collect();
    let want: BTreeSet<String> =
        proxies.iter().map(|(n, (c, _))| format!("{n}:{}", c.admin.listen.port())).collect();
    assert_eq!(targets, want, "prometheus.yml: the proxies' admin listeners");
}
