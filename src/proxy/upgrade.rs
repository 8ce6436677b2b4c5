//! Protocol switches (HTTP/1.1 `Upgrade`, as WebSocket uses it): once both sides have
//! agreed, the proxy copies bytes both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(super) fn spawn_tunnel(
    tracker: &TaskTracker,
    cut: CancellationToken,
    client: OnUpgrade,
    upstream: OnUpgrade,
) {
    tracker.spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "protocol switch failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "tunnel ended with an error");
                }
            }
            _ = cut.cancelled() => tracing::debug!("tunnel cut by drain timeout"),
        }
    });
}
