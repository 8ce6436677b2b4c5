//! The fleet commands as the binary runs them: parse inputs, run, print, choose the exit
//! code (0 done, 1 failed or rolled back, 2 bad usage or input).

use std::path::Path;

use super::FleetFile;
use super::client::AdminClient;
use super::evacuate::{RunError, RunOptions, Runner, exercise};
use super::{push, report, status};
use crate::cli::{EXIT_BAD_INPUT, EXIT_FAILED, RunArgs};
use crate::table::Table;

/// An exit code and what to say on stderr.
pub struct Exit(pub u8);

pub(crate) fn fleet(path: &Path) -> Result<FleetFile, Exit> {
    FleetFile::load(path).map_err(|e| {
        crate::errln!("error: {e}");
        Exit(EXIT_BAD_INPUT)
    })
}

fn table(path: &Path) -> Result<Table, Exit> {
    let text = std::fs::read(path).map_err(|e| {
        crate::errln!("error: {}: cannot read: {e}", path.display());
        Exit(EXIT_BAD_INPUT)
    })?;
    let t = Table::parse(&text).and_then(|t| t.validate(&t.self_known()).map(|_| t)).map_err(|e| {
        crate::errln!("error: {}: {e}", path.display());
        Exit(EXIT_BAD_INPUT)
    })?;
    Ok(t)
}

pub async fn push_cmd(
    fleet_path: &Path,
    table_path: &Path,
    timeout: std::time::Duration,
    json: bool,
    signing_key: Option<&Path>,
) -> Exit {
    let mut t = match table(table_path) {
        Ok(t) => t,
        Err(e) => return e,
    };
    match signer(signing_key) {
        Ok(Some(key)) => key.sign(&mut t),
        Ok(None) => {}
        Err(e) => return e,
    }
    let (client, proxies, f) = match connect(fleet_path, timeout).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Some(cfg) = &f.store
        && let Err(e) = write_through_store(cfg, &t).await
    {
        return e;
    }
    let results = push::push(&client, &proxies, &t).await;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&results).unwrap_or_default());
    } else {
        crate::out!("{}", push::render(&results));
    }
    let failed = results.iter().filter(|r| !r.ok()).count();
    if let Some(line) = push::auth_refusal(&results) {
        crate::errln!("error: {line}");
    }
    if failed > 0 {
        crate::errln!("error: {failed} of {} proxies did not apply version {}", results.len(), t.version);
        return Exit(EXIT_FAILED);
    }
    crate::errln!("version {} is in force on all {} proxies", t.version, results.len());
    Exit(0)
}

/// `push` with `[store]`: the table goes to the store first, over the table read there; a
/// version the store already passed, or a rival push that won the race, stops it before
/// any proxy gets it.
async fn write_through_store(cfg: &crate::config::Store, t: &Table) -> Result<(), Exit> {
    let mut run = super::store_write::StoreRun::open(cfg).await.map_err(|e| {
        crate::errln!("error: {e}; nothing pushed");
        Exit(EXIT_FAILED)
    })?;
    if let Some(cur) = run.table() {
        if cur.version == t.version && cur.same_content(t) {
            crate::errln!("the store already holds version {}", t.version);
            return Ok(());
        }
        if cur.version >= t.version {
            crate::errln!(
                "error: the store holds version {} ({}): version {} is not newer; nothing pushed",
                cur.version,
                cur.note.as_deref().unwrap_or("no note"),
                t.version
            );
            return Err(Exit(EXIT_FAILED));
        }
    }
    run.write(t).await.map_err(|e| {
        crate::errln!(
            "error: {}",
            super::store_write::refused(&e, &format!("push of version {}", t.version))
        );
        Exit(EXIT_FAILED)
    })?;
    crate::errln!("version {} written to the store (etcd revision {})", t.version, run.revision());
    Ok(())
}

/// The fleet file read, its proxies listed (`dns:` expanded) and a client for them.
async fn connect(
    fleet_path: &Path,
    timeout: std::time::Duration,
) -> Result<(AdminClient, Vec<push::Proxy>, FleetFile), Exit> {
    let f = fleet(fleet_path)?;
    let proxies = push::proxies(&f).await.map_err(|e| {
        crate::errln!("error: {}: {e}", f.file.display());
        Exit(EXIT_FAILED)
    })?;
    Ok((AdminClient::for_fleet(&f, timeout), proxies, f))
}

pub async fn status_cmd(fleet_path: &Path, json: bool, timeout: std::time::Duration) -> Exit {
    let (client, proxies, f) = match connect(fleet_path, timeout).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut st = status::gather(&client, &proxies, 60).await;
    if let Some(cfg) = &f.store {
        st.store = Some(match super::store_write::StoreRun::open(cfg).await {
            Ok(run) => {
                let (version, note) = run.table().map(|t| (t.version, t.note.clone())).unwrap_or((0, None));
                status::StoreView::new(version, note, run.revision(), &st)
            }
            Err(e) => status::StoreView::unreadable(e.to_string()),
        });
    }
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        crate::out!("{}", status::render(&st));
    }
    // Exit 1 when a proxy is unreachable, when versions disagree, or when one version has
    // several contents (a split fleet).
    let split = !st.versions_agree || !st.conflicts.is_empty();
    let store_off = st.store.as_ref().is_some_and(status::StoreView::failing);
    Exit(if st.unreachable > 0 || split || store_off { EXIT_FAILED } else { 0 })
}

/// The signing key named by `--signing-key` / `FLOWGATE_SIGNING_KEY`, loaded.
pub(crate) fn signer(
    path: Option<&Path>,
) -> Result<Option<std::sync::Arc<crate::table::sign::SigningKey>>, Exit> {
    let Some(path) = path else { return Ok(None) };
    crate::table::sign::SigningKey::load(path).map(|k| Some(std::sync::Arc::new(k))).map_err(|e| {
        crate::errln!("error: --signing-key {e}");
        Exit(EXIT_BAD_INPUT)
    })
}

/// `keygen --out FILE`.
pub fn keygen_cmd(out: &Path) -> Exit {
    match crate::table::sign::keygen(out) {
        Ok(public) => {
            crate::outln!("{public}");
            crate::errln!(
                "private key in {} (keep it secret), public key in {}.pub: put it in [admin] table_keys",
                out.display(),
                out.display()
            );
            Exit(0)
        }
        Err(e) => {
            crate::errln!("error: {e}");
            Exit(EXIT_FAILED)
        }
    }
}

fn options(a: &RunArgs) -> Result<RunOptions, Exit> {
    Ok(RunOptions {
        steps: a.steps,
        interval: a.interval,
        max_utilization: a.max_utilization,
        max_error_ratio: a.max_error_ratio,
        dry_run: a.dry_run,
        yes: a.yes,
        json: a.json,
        quiet: false,
        before_shift: a.before_shift.clone(),
        dns: a.dns.clone(),
        timeout: a.timeout,
        hold: None,
        source_failing: false,
        evacuate: Default::default(),
        hook_env: Vec::new(),
        signer: signer(a.signing_key.as_deref())?,
        force: a.force,
        autopilot: false,
        store_lease: None,
    })
}

fn finish(result: Result<(), RunError>) -> Exit {
    match result {
        Ok(()) => Exit(0),
        Err(e) => {
            crate::errln!("error: {e}");
            Exit(match e {
                RunError::Usage(_) => EXIT_BAD_INPUT,
                _ => EXIT_FAILED,
            })
        }
    }
}

/// `evacuate` or `restore`.
pub async fn move_cmd(region: &str, phase: &str, args: &RunArgs, to: Option<&Path>) -> Exit {
    let f = match fleet(&args.fleet) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let target = match to.map(table).transpose() {
        Ok(t) => t,
        Err(e) => return e,
    };
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut runner = Runner::new(&f, opts);
    finish(runner.run(region, phase, target).await)
}

pub async fn exercise_cmd(
    region: &str,
    args: &RunArgs,
    hold: std::time::Duration,
    report_path: Option<&Path>,
) -> Exit {
    let f = match fleet(&args.fleet) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut runner = Runner::new(&f, opts);
    let result = exercise(&mut runner, region, hold).await;
    let failure = result.as_ref().err().map(ToString::to_string);
    let verdict = report::Verdict::judge(failure.as_deref(), &runner.journal);
    if let Some(path) = report_path {
        let html = report::render(region, &verdict.to_string(), &runner.journal, &started);
        if let Err(e) = std::fs::write(path, html) {
            crate::errln!("error: {}: cannot write the report: {e}", path.display());
            return Exit(EXIT_FAILED);
        }
        crate::errln!("report written to {}", path.display());
    }
    match &verdict {
        report::Verdict::Fail(why) => crate::errln!("error: {why}"),
        // An idle fleet's exercise moved every table through its gates: exit 0, but say
        // that it proves nothing about clients.
        v => crate::errln!("exercise {region}: {v}"),
    }
    match result {
        Ok(()) => Exit(0),
        Err(RunError::Usage(_)) => Exit(EXIT_BAD_INPUT),
        Err(_) => Exit(EXIT_FAILED),
    }
}

/// `probe URL`: 0 on a 2xx answer, 1 otherwise (a container health check without curl);
/// 2 when `url` is not an http:// URL with a host.
pub async fn probe_cmd(url: &str, timeout: std::time::Duration) -> Exit {
    let uri = match probe_target(url) {
        Ok(u) => u,
        Err(why) => {
            crate::errln!("error: {url:?} is not a URL to probe: {why}");
            return Exit(EXIT_BAD_INPUT);
        }
    };
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    match tokio::time::timeout(timeout, client.get(uri)).await {
        Ok(Ok(resp)) if resp.status().is_success() => Exit(0),
        Ok(Ok(resp)) => {
            crate::errln!("{url}: {}", resp.status());
            Exit(EXIT_FAILED)
        }
        Ok(Err(e)) => {
            crate::errln!("{url}: {}", super::client::source_text(&e));
            Exit(EXIT_FAILED)
        }
        Err(_) => {
            crate::errln!("{url}: no answer within {timeout:?}");
            Exit(EXIT_FAILED)
        }
    }
}

/// The URL a probe GETs: absolute, `http`, with a host. What fails here is bad usage; a
/// good URL nobody answers at is a failed probe (exit 1).
fn probe_target(url: &str) -> Result<http::Uri, String> {
    let uri = url.parse::<http::Uri>().map_err(|e| e.to_string())?;
    match uri.scheme_str() {
        None => return Err("no scheme (write http://HOST:PORT/PATH)".into()),
        Some("http") => {}
        Some(other) => return Err(format!("scheme `{other}` is not supported (only http://)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::probe_target;

    #[test]
    fn a_probe_takes_only_absolute_http_urls_with_a_host() {
        assert!(probe_target("http://127.0.0.1:9901/healthz").is_ok());
        assert!(probe_target("http://localhost/").is_ok());
        for bad in ["notaurl", "/healthz", "127.0.0.1:9901", "https://127.0.0.1/", "ftp://x/", "http://", ""]
        {
            assert!(probe_target(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
