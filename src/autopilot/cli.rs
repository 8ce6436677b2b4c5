//! The `autopilot` command as the binary runs it: flip the pause switch (in the state
//! file, or through a running autopilot's listener), or check the options, bind and run
//! until a signal.

use super::{Autopilot, AutopilotError, Options, switch};
use crate::cli::{AutopilotCmd, AutopilotSwitch, EXIT_BAD_INPUT, EXIT_FAILED};
use crate::fleet::cli::{Exit, fleet, signer};
use crate::fleet::client::AdminClient;

/// `autopilot`, `autopilot pause` and `autopilot resume`.
pub async fn autopilot_cmd(cmd: AutopilotCmd) -> Exit {
    if let Some(sw) = cmd.switch {
        let (paused, a) = match sw {
            AutopilotSwitch::Pause(a) => (true, a),
            AutopilotSwitch::Resume(a) => (false, a),
        };
        let f = match fleet(&a.fleet) {
            Ok(f) => f,
            Err(e) => return e,
        };
        let word = if paused { "paused" } else { "resumed" };
        if let Some(addr) = &a.autopilot {
            let path = if paused { "/v1/pause" } else { "/v1/resume" };
            let client = AdminClient::for_fleet(&f, std::time::Duration::from_secs(5));
            return match client.post(addr, path).await {
                Ok(_) => {
                    crate::outln!("autopilot at {addr} {word}");
                    Exit(0)
                }
                Err(e) => {
                    crate::errln!("error: {e}");
                    Exit(EXIT_FAILED)
                }
            };
        }
        let path = a.state_file.unwrap_or_else(|| switch::default_path(&a.fleet));
        return match switch::set_paused(&path, paused, "cli") {
            Ok(_) => {
                crate::outln!("autopilot {word} (state in {})", path.display());
                Exit(0)
            }
            Err(e) => {
                crate::errln!("error: {e}");
                Exit(EXIT_FAILED)
            }
        };
    }
    let a = cmd.run;
    let Some(fleet_path) = a.fleet.clone() else {
        crate::errln!("error: --fleet FILE is required");
        return Exit(EXIT_BAD_INPUT);
    };
    let f = match fleet(&fleet_path) {
        Ok(f) => f,
        Err(e) => return e,
    };
    if !(a.max_utilization > 0.0 && a.max_utilization <= 1.0) || a.steps == 0 || a.min_healthy_regions == 0 {
        crate::errln!(
            "error: --max-utilization must be in (0, 1], --steps and --min-healthy-regions at least 1"
        );
        return Exit(EXIT_BAD_INPUT);
    }
    if f.token().is_none() {
        crate::errln!(
            "warning: {} is not set: the autopilot can read the fleet but every push it makes will be refused (401)",
            f.token_env
        );
    }
    let opts = Options {
        listen: a.listen.clone(),
        interval: a.interval,
        confirm: a.confirm,
        min_healthy_regions: a.min_healthy_regions,
        max_utilization: a.max_utilization,
        steps: a.steps,
        step_interval: a.step_interval,
        auto_restore: a.auto_restore,
        cooldown: a.cooldown,
        dry_run: a.dry_run,
        before_shift: a.before_shift.clone(),
        dns: a.dns.clone(),
        notify: a.notify.clone(),
        max_error_ratio: a.max_error_ratio,
        failing_error_ratio: a.failing_error_ratio,
        state_file: a.state_file.clone().unwrap_or_else(|| switch::default_path(&fleet_path)),
        timeout: a.timeout,
        print: true,
        signer: match signer(a.signing_key.as_deref()) {
            Ok(s) => s,
            Err(e) => return e,
        },
    };
    let pilot = match Autopilot::bind(f, opts).await {
        Ok(p) => p,
        Err(e) => {
            crate::errln!("error: {e}");
            return Exit(match e {
                AutopilotError::State(_) => EXIT_BAD_INPUT,
                _ => EXIT_FAILED,
            });
        }
    };
    if let Some(addr) = pilot.local_addr() {
        crate::errln!("autopilot listening on http://{addr}/ ({} regions)", fleet_path.display());
    }
    let reload = pilot.reload_flag();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    reload.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        Err(e) => {
            crate::errln!("warning: cannot install the SIGHUP handler ({e}); the fleet file is read once")
        }
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        signal.cancel();
    });
    pilot.run(stop).await;
    Exit(0)
}
