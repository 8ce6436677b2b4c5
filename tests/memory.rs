//! A 256 MiB streamed request and a 256 MiB streamed response
//! pass through the real binary while its resident memory grows by less than 32 MiB.
//!
//! The proxy runs as its own process so that its VmRSS is its own and not the test's.
//! A sampler task reads `/proc/PID/status` every 10 ms during each transfer; the peak
//! over the baseline taken after a warm-up is what the assertion bounds.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Body, Frame};
use hyper_util::rt::TokioIo;
use support::{ProxyProcess, config_text, origin};
use tokio::net::TcpStream;

const BIG: u64 = 256 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// How much the resident memory may grow while 256 MiB pass each way.
const MAX_GROWTH_KIB: u64 = 32 * 1024;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// Samples the proxy's VmRSS every 10 ms until stopped; returns the highest value seen
/// and how many samples were taken.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, usize)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let task = tokio::spawn(async move {
            let (mut peak, mut samples) = (0u64, 0usize);
            // Bounded: at most about 10 minutes of samples even if nobody stops it.
            for _ in 0..60_000 {
                if let Some(kib) = rss_kib(pid) {
                    peak = peak.max(kib);
                    samples += 1;
                }
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                // The sampling pace.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (peak, samples)
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("sampler task")
    }
}

/// One HTTP/1.1 connection to the proxy, with a body type of the caller's choosing.
async fn connect<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("h1 handshake");
    tokio::spawn(conn);
    send
}

/// POSTs `total` bytes to the origin's `/count` in 64 KiB chunks made as they are sent
/// (one shared 64 KiB buffer; the whole body never exists) and returns the count the
/// origin answered.
async fn upload(addr: SocketAddr, total: u64) -> u64 {
    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let stream = futures_util::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK as u64) as usize;
            Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n as u64))
        }
    });
    let mut send = connect::<StreamBody<_>>(addr).await;
    // No content-length: the body goes chunked, as a streaming client would send it.
    let req = Request::post("/count").header("host", "test").body(StreamBody::new(stream)).expect("request");
    let resp = send.send_request(req).await.expect("upload response");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("upload response body").to_bytes();
    std::str::from_utf8(&body).expect("utf-8 count").trim().parse().expect("numeric count")
}

/// GETs `/bytes/N` and counts the bytes as they arrive, keeping none of them.
async fn download(addr: SocketAddr, total: u64) -> u64 {
    let mut send = connect::<Empty<Bytes>>(addr).await;
    let req = Request::get(format!("/bytes/{total}")).header("host", "test").body(Empty::new()).expect("req");
    let resp = send.send_request(req).await.expect("download response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("download body frame");
        if let Some(d) = frame.data_ref() {
            received += d.len() as u64;
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_256_mib_each_way_in_bounded_memory() {
    let o = origin::start().await;
    let proxy = ProxyProcess::spawn(&config_text(o.addr, ""));
    let pid = proxy.pid();
    let addr = proxy.public;

    // Warm-up: pools, buffers and the allocator's arenas get their steady-state size.
    assert_eq!(upload(addr, 8 * 1024 * 1024).await, 8 * 1024 * 1024);
    assert_eq!(download(addr, 8 * 1024 * 1024).await, 8 * 1024 * 1024);
    let baseline = proxy.rss_kib();

    let t0 = Instant::now();
    let sampler = Sampler::start(pid);
    let counted =
        tokio::time::timeout(Duration::from_secs(60), upload(addr, BIG)).await.expect("upload in time");
    let (up_peak, up_samples) = sampler.finish().await;
    let up_secs = t0.elapsed().as_secs_f64();
    assert_eq!(counted, BIG, "the origin must count every byte of the upload");

    let t1 = Instant::now();
    let sampler = Sampler::start(pid);
    let received =
        tokio::time::timeout(Duration::from_secs(60), download(addr, BIG)).await.expect("download in time");
    let (down_peak, down_samples) = sampler.finish().await;
    let down_secs = t1.elapsed().as_secs_f64();
    assert_eq!(received, BIG, "the client must receive every byte of the download");

    let up_growth = up_peak.saturating_sub(baseline);
    let down_growth = down_peak.saturating_sub(baseline);
    eprintln!(
        "memory: baseline VmRSS {baseline} KiB; upload 256 MiB in {up_secs:.1} s, peak {up_peak} KiB \
         (+{up_growth} KiB, {up_samples} samples); download 256 MiB in {down_secs:.1} s, peak \
         {down_peak} KiB (+{down_growth} KiB, {down_samples} samples)"
    );
    // A transfer shorter than a few samples would prove nothing about the peak.
    assert!(up_samples >= 3 && down_samples >= 3, "too few RSS samples: {up_samples}, {down_samples}");
    assert!(
        up_growth < MAX_GROWTH_KIB,
        "proxy RSS grew by {up_growth} KiB during the 256 MiB upload (limit {MAX_GROWTH_KIB} KiB)"
    );
    assert!(
        down_growth < MAX_GROWTH_KIB,
        "proxy RSS grew by {down_growth} KiB during the 256 MiB download (limit {MAX_GROWTH_KIB} KiB)"
    );
}
