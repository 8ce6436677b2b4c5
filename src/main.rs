//! The `flowgate` binary: parse the command line, install the crypto provider, start
//! logging and the runtime, dispatch.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use flowgate::cli::{Cli, Command, EXIT_BAD_INPUT, EXIT_FAILED};
use flowgate::config::Config;
use flowgate::fleet::cli::{self as commands, Exit};
use flowgate::server::Server;
use flowgate::table::{Known, Table};

/// mimalloc's thread-local free lists suit a proxy's many small, short-lived buffers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version are not errors. `print` reports a reader that has gone as an
            // error, which is ignored here: the exit code says how parsing went.
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_BAD_INPUT) } else { ExitCode::SUCCESS };
        }
    };
    // One provider for the whole process, before any TLS config is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve { config, addr_file } => serve(&config, addr_file.as_deref()),
        Command::Validate { config, table } => validate(config.as_deref(), table.as_deref()),
        Command::Push { fleet, table, timeout, json, signing_key } => in_runtime("warn", async move {
            commands::push_cmd(&fleet, &table, timeout, json, signing_key.as_deref()).await
        }),
        Command::Keygen { out } => in_runtime("warn", async move { commands::keygen_cmd(&out) }),
        Command::Status { fleet, json, timeout } => {
            in_runtime("warn", async move { commands::status_cmd(&fleet, json, timeout).await })
        }
        Command::Evacuate { region, run } => {
            in_runtime("warn", async move { commands::move_cmd(&region, "evacuate", &run, None).await })
        }
        Command::Restore { region, run, to } => {
            in_runtime(
                "warn",
                async move { commands::move_cmd(&region, "restore", &run, to.as_deref()).await },
            )
        }
        Command::Exercise { region, run, hold, report } => {
            in_runtime(
                "warn",
                async move { commands::exercise_cmd(&region, &run, hold, report.as_deref()).await },
            )
        }
        Command::Probe { url, timeout } => {
            in_runtime("warn", async move { commands::probe_cmd(&url, timeout).await })
        }
        Command::Autopilot(a) => {
            in_runtime("warn", async move { flowgate::autopilot::cli::autopilot_cmd(a).await })
        }
        Command::Completions { shell } => completions(shell),
        Command::Man { command } => man(command.as_deref()),
        // The demo draws its own view: only errors may interrupt it.
        Command::Demo { duration, keep_running, dir } => in_runtime("error", async move {
            Exit(flowgate::demo::run(flowgate::demo::DemoOptions { duration, keep_running, dir }).await)
        }),
    }
}

/// The fleet commands: a small runtime, quiet logs (at `level`), the command's own exit
/// code.
fn in_runtime(level: &str, command: impl Future<Output = Exit>) -> ExitCode {
    flowgate::telemetry::init(&flowgate::config::Log { level: level.into(), ..Default::default() });
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            flowgate::errln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let Exit(code) = runtime.block_on(command);
    ExitCode::from(code)
}

/// `completions SHELL`: the script for that shell on stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    // Made in memory first: the generators panic on a failed write, and stdout's reader
    // may be gone (`flowgate completions bash | head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "flowgate", &mut script);
    flowgate::out!("{}", String::from_utf8_lossy(&script));
    ExitCode::SUCCESS
}

/// `man [SUBCOMMAND]`: flowgate(1), or flowgate-SUBCOMMAND(1), in roff on stdout.
fn man(sub: Option<&str>) -> ExitCode {
    let mut cli = Cli::command();
    // Built first, so that a subcommand's page has every inherited and generated arg.
    cli.build();
    let cmd = match sub {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            // Built, it is already named `flowgate-NAME` for display, `flowgate NAME` to run.
            Some(c) => c.clone().version(env!("CARGO_PKG_VERSION")),
            None => {
                let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                flowgate::errln!("error: no subcommand `{name}` (there are: {})", names.join(", "));
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
    };
    let mut page = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut page) {
        flowgate::errln!("error: cannot render the man page: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    flowgate::out!("{}", String::from_utf8_lossy(&page));
    ExitCode::SUCCESS
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        for e in &errors.0 {
            flowgate::errln!("error: {e}");
        }
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

fn validate(config: Option<&std::path::Path>, table: Option<&std::path::Path>) -> ExitCode {
    if config.is_none() && table.is_none() {
        flowgate::errln!("error: nothing to validate: give --config FILE and/or --table FILE");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let cfg = match config.map(load).transpose() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let (Some(cfg), Some(path)) = (&cfg, config) {
        flowgate::outln!(
            "{}: ok (region {}, {} origins, {} peers, {} routes)",
            path.display(),
            cfg.region,
            cfg.origins.len(),
            cfg.peers.len(),
            cfg.routes.len()
        );
    }
    if let Some(path) = table {
        let checked = std::fs::read(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|text| Table::parse(&text).map_err(|e| e.to_string()))
            .and_then(|t| {
                let known = match &cfg {
                    Some(c) => Known {
                        regions: std::iter::once(c.region.as_str())
                            .chain(c.peers.keys().map(String::as_str))
                            .collect(),
                        origins: c.origins.keys().map(String::as_str).collect(),
                    },
                    None => t.self_known(),
                };
                t.validate(&known).map(|_| t.version).map_err(|e| e.to_string())
            });
        match checked {
            Ok(version) => flowgate::outln!("{}: ok (version {version})", path.display()),
            Err(e) => {
                flowgate::errln!("error: {}: {e}", path.display());
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    }
    ExitCode::SUCCESS
}

fn serve(path: &std::path::Path, addr_file: Option<&std::path::Path>) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    flowgate::telemetry::init(&cfg.log);
    let runtime = match cfg.runtime.workers {
        // One worker: a current-thread runtime avoids cross-thread wakeups entirely.
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            flowgate::errln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async {
        let server = match Server::bind(cfg).await {
            Ok(s) => s,
            Err(e) => {
                flowgate::errln!("error: {}: {e}", path.display());
                // A bad table file is bad input, like a bad config; a busy port is not.
                let bad_input = matches!(
                    e,
                    flowgate::server::ServeError::Build(
                        flowgate::proxy::BuildError::Table { .. }
                            | flowgate::proxy::BuildError::TableRead { .. }
                    )
                );
                return ExitCode::from(if bad_input { EXIT_BAD_INPUT } else { EXIT_FAILED });
            }
        };
        // Written once every listener is bound and before any is served, so whoever reads
        // it can connect at once (the kernel queues connections until accepted).
        if let Some(file) = addr_file
            && let Err(e) = server.addrs().write_file(file)
        {
            flowgate::errln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
        reload_on_sighup(server.control());
        server.run(flowgate::server::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP re-reads the config; a bad file is refused with a log line and changes nothing.
fn reload_on_sighup(control: std::sync::Arc<flowgate::control::Control>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; reloads are off");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match control.reload().await {
                Ok(()) => tracing::info!("SIGHUP: config reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: config refused; keeping the one in force"),
            }
        }
    });
}
