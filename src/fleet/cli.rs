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
        eprintln!("error: {e}");
        Exit(EXIT_BAD_INPUT)
    })
}

fn table(path: &Path) -> Result<Table, Exit> {
    let text = std::fs::read(path).map_err(|e| {
        eprintln!("error: {}: cannot read: {e}", path.display());
        Exit(EXIT_BAD_INPUT)
    })?;
    let t = Table::parse(&text).and_then(|t| t.validate(&t.self_known()).map(|_| t)).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
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
        println!("{}", serde_json::to_string_pretty(&results).unwrap_or_default());
    } else {
        print!("{}", push::render(&results));
    }
    let failed = results.iter().filter(|r| !r.ok()).count();
    if failed > 0 {
        eprintln!("error: {failed} of {} proxies did not apply version {}", results.len(), t.version);
        return Exit(EXIT_FAILED);
    }
    eprintln!("version {} is in force on all {} proxies", t.version, results.len());
    Exit(0)
}

/// `push` with `[store]`: the table goes to the store first, over the table read there; a
/// version the store already passed, or a rival push that won the race, stops it before
/// any proxy gets it.
async fn write_through_store(cfg: &crate::config::Store, t: &Table) -> Result<(), Exit> {
    let mut run = super::store_write::StoreRun::open(cfg).await.map_err(|e| {
        eprintln!("error: {e}; nothing pushed");
        Exit(EXIT_FAILED)
    })?;
    if let Some(cur) = run.table() {
        if cur.version == t.version && cur.same_content(t) {
            eprintln!("the store already holds version {}", t.version);
            return Ok(());
        }
        if cur.version >= t.version {
            eprintln!(
                "error: the store holds version {} ({}): version {} is not newer; nothing pushed",
                cur.version,
                cur.note.as_deref().unwrap_or("no note"),
                t.version
            );
            return Err(Exit(EXIT_FAILED));
        }
    }
    run.write(t).await.map_err(|e| {
        eprintln!("error: {}", super::store_write::refused(&e, &format!("push of version {}", t.version)));
        Exit(EXIT_FAILED)
    })?;
    eprintln!("version {} written to the store (etcd revision {})", t.version, run.revision());
    Ok(())
}

/// The fleet file read, its proxies listed (`dns:` expanded) and a client for them.
async fn connect(
    fleet_path: &Path,
    timeout: std::time::Duration,
) -> Result<(AdminClient, Vec<push::Proxy>, FleetFile), Exit> {
    let f = fleet(fleet_path)?;
    let proxies = push::proxies(&f).await.map_err(|e| {
        eprintln!("error: {}: {e}", f.file.display());
        Exit(EXIT_FAILED)
    })?;
    Ok((AdminClient::new(f.token(), timeout), proxies, f))
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
        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        print!("{}", status::render(&st));
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
        eprintln!("error: --signing-key {e}");
        Exit(EXIT_BAD_INPUT)
    })
}

/// `keygen --out FILE`.
pub fn keygen_cmd(out: &Path) -> Exit {
    match crate::table::sign::keygen(out) {
        Ok(public) => {
            println!("{public}");
            eprintln!(
                "private key in {} (keep it secret), public key in {}.pub: put it in [admin] table_keys",
                out.display(),
                out.display()
            );
            Exit(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
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
            eprintln!("error: {e}");
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
    let verdict = match &result {
        Ok(()) => "pass: evacuated, held and restored with every gate green".to_owned(),
        Err(e) => format!("fail: {e}"),
    };
    if let Some(path) = report_path {
        let html = report::render(region, &verdict, &runner.journal, &started);
        if let Err(e) = std::fs::write(path, html) {
            eprintln!("error: {}: cannot write the report: {e}", path.display());
            return Exit(EXIT_FAILED);
        }
        eprintln!("report written to {}", path.display());
    }
    finish(result)
}

/// `probe URL`: 0 on a 2xx answer, 1 otherwise (a container health check without curl).
pub async fn probe_cmd(url: &str, timeout: std::time::Duration) -> Exit {
    let Ok(uri) = url.parse::<http::Uri>() else {
        eprintln!("error: {url:?} is not a URL");
        return Exit(EXIT_BAD_INPUT);
    };
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    match tokio::time::timeout(timeout, client.get(uri)).await {
        Ok(Ok(resp)) if resp.status().is_success() => Exit(0),
        Ok(Ok(resp)) => {
            eprintln!("{url}: {}", resp.status());
            Exit(EXIT_FAILED)
        }
        Ok(Err(e)) => {
            eprintln!("{url}: {e}");
            Exit(EXIT_FAILED)
        }
        Err(_) => {
            eprintln!("{url}: no answer within {timeout:?}");
            Exit(EXIT_FAILED)
        }
    }
}
