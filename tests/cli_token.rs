//! The fleet commands with a wrong admin token and with none, against a small real fleet:
//! one message that names the variable to set, exit 1, and nothing changed on any proxy
//! (no step, no claim, no "ROLLBACK INCOMPLETE" over a run that applied nothing).
mod cli_kit;
mod support;

use cli_kit::{A, Ran, SmallFleet, Stdout, TOKEN, flowgate, path_str};

/// The stream says what to do about the token exactly once.
fn names_the_variable_once(what: &str, ran: &Ran, unset: bool) {
    eprintln!("--- {what}: exit {:?}\n{}{}", ran.code, ran.stdout, ran.stderr);
    let said = ran.stderr.matches("FLOWGATE_ADMIN_TOKEN").count();
    assert_eq!(said, 1, "{what}: one message naming FLOWGATE_ADMIN_TOKEN:\n{}", ran.stderr);
    assert!(ran.stderr.contains("401 unauthorized"), "{what}:\n{}", ran.stderr);
    let hint = if unset { "FLOWGATE_ADMIN_TOKEN is not set" } else { "the admin token was refused" };
    assert!(ran.stderr.contains(hint), "{what}: {hint:?}:\n{}", ran.stderr);
    assert!(!ran.stderr.contains("ROLLBACK INCOMPLETE"), "{what}: nothing was applied:\n{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_token_stops_push_evacuate_and_exercise_with_one_message_and_changes_nothing() {
    let ops = SmallFleet::start().await;
    let fleet = ops.fleet();
    let v2 = ops.table_file(2);
    let before = ops.fingerprint().await;
    let quick = ["--steps", "2", "--interval", "1s", "--timeout", "2s", "--yes"];
    for (token, unset) in [(Some("not-the-token"), false), (None, true)] {
        let push = ["push", "--fleet", fleet, path_str(&v2)];
        let ran = flowgate(&push, token, Stdout::Read).await;
        ran.expect("push with a refused token", 1);
        names_the_variable_once("push", &ran, unset);
        assert!(ran.stdout.contains("refused"), "the table of answers:\n{}", ran.stdout);

        let evacuate = [&["evacuate", A, "--fleet", fleet][..], &quick].concat();
        let ran = flowgate(&evacuate, token, Stdout::Read).await;
        ran.expect("evacuate with a refused token", 1);
        names_the_variable_once("evacuate", &ran, unset);
        assert!(ran.stderr.contains("nothing was applied"), "{}", ran.stderr);

        let exercise = [&["exercise", A, "--fleet", fleet, "--hold", "1s"][..], &quick].concat();
        let ran = flowgate(&exercise, token, Stdout::Read).await;
        ran.expect("exercise with a refused token", 1);
        names_the_variable_once("exercise", &ran, unset);
        assert!(ran.stderr.contains("nothing was applied"), "{}", ran.stderr);

        assert_eq!(ops.fingerprint().await, before, "a refused token changes no proxy's table");
    }
    // The right token still works: the refusals left nothing claimed.
    let ran = flowgate(&["push", "--fleet", fleet, path_str(&v2)], Some(TOKEN), Stdout::Read).await;
    ran.expect("push with the token", 0);
    ops.stop().await;
}
