//! Graceful drain of the real binary on SIGTERM.
//!
//! With `[drain] delay = "1s"`, `timeout = "10s"`, after SIGTERM:
//! - `/readyz` on the admin listener is 503 within 200 ms;
//! - the public listener still accepts during the delay, and refuses after it;
//! - a request in flight when the signal arrives completes with 200 (and, being on an
//!   HTTP/1.1 connection that is being drained, says `Connection: close`);
//! - an HTTP/2 connection opened before the signal receives a GOAWAY frame once the
//!   listeners close, and a hyper h2 client sees its connection end;
//! - the process exits with code 0.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::wait::{poll, wait_until};
use support::{ProxyProcess, config_text, origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// GET `path` on a fresh HTTP/1.1 connection; returns status, `connection` header, body.
async fn h1_get(addr: SocketAddr, path: &str) -> (StatusCode, Option<String>, Bytes) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(path).header("host", "drain.example").body(Empty::new()).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status();
    let connection = resp.headers().get("connection").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, connection, body)
}

// HTTP/2 frame types (RFC 9113 section 6).
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

async fn read_frame(rd: &mut OwnedReadHalf) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    rd.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    rd.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

/// A raw HTTP/2 (prior knowledge) connection, set up as far as the server's SETTINGS.
/// Raw frames let the test see the GOAWAY itself rather than only a closed socket.
async fn raw_h2(addr: SocketAddr) -> (OwnedReadHalf, OwnedWriteHalf) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
    wr.write_all(&hello).await.expect("send preface");
    let setup = tokio::time::timeout(Duration::from_secs(5), async {
        // Bounded: the server's first frame must be SETTINGS (RFC 9113 section 3.4).
        for _ in 0..8 {
            let (ty, flags, _) = read_frame(&mut rd).await.expect("frame from server");
            if ty == SETTINGS && flags & ACK == 0 {
                wr.write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]).await.expect("ack settings");
                return;
            }
        }
        panic!("no SETTINGS from the server");
    })
    .await;
    assert!(setup.is_ok(), "HTTP/2 setup timed out");
    (rd, wr)
}

/// Reads frames until the server closes the connection, answering PINGs as every client
/// must (a graceful HTTP/2 shutdown waits for a PING acknowledgement before its final
/// GOAWAY). Returns when the first GOAWAY came and its error code, if one did.
async fn watch_goaway(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf) -> Option<(Instant, u32)> {
    let mut first = None;
    // Bounded by the caller's timeout and by the connection's end.
    while let Some((ty, flags, payload)) = read_frame(&mut rd).await {
        if ty == GOAWAY && payload.len() >= 8 && first.is_none() {
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            first = Some((Instant::now(), code));
        }
        if ty == PING && flags & ACK == 0 {
            let mut pong = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
            pong.extend_from_slice(&payload);
            if wr.write_all(&pong).await.is_err() {
                break;
            }
        }
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let o = origin::start().await;
    let mut proxy = ProxyProcess::spawn(&config_text(o.addr, "[drain]\ndelay = \"1s\"\ntimeout = \"10s\"\n"));
    let (public, admin) = (proxy.public, proxy.admin);

    assert_eq!(h1_get(admin, "/readyz").await.0, 200, "ready before the signal");

    // An h2c client with a request done before the signal.
    let stream = TcpStream::connect(public).await.expect("connect h2c");
    let (mut h2, h2_conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let h2_conn = tokio::spawn(async move {
        let _ = h2_conn.await;
        Instant::now()
    });
    let resp = h2.send_request(Request::get("http://drain.example/").body(Empty::new()).expect("req"));
    let resp =
        tokio::time::timeout(Duration::from_secs(5), resp).await.expect("h2 in time").expect("h2 response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    resp.into_body().collect().await.expect("h2 body");

    // A raw HTTP/2 connection, idle, that will watch for GOAWAY.
    let (raw_rd, raw_wr) = raw_h2(public).await;
    let goaway = tokio::spawn(watch_goaway(raw_rd, raw_wr));

    // A slow request on its own HTTP/1.1 connection, in flight when the signal comes.
    let slow = tokio::spawn(h1_get(public, "/slow/3000"));
    wait_until("the slow request to reach the origin", Duration::from_secs(3), || async {
        o.hits.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(!goaway.is_finished() && !h2_conn.is_finished(), "HTTP/2 connections ended before the signal");

    let t0 = Instant::now();
    proxy.signal("TERM");

    // /readyz turns 503 at once (polled, since the signal is delivered asynchronously).
    let polls = std::cell::Cell::new(0);
    let limit = Duration::from_millis(200).saturating_sub(t0.elapsed());
    let turned = poll(limit, Duration::from_millis(5), || async {
        polls.set(polls.get() + 1);
        let status = h1_get(admin, "/readyz").await.0;
        if status == 503 {
            return Ok(());
        }
        assert_eq!(status, 200);
        Err(status)
    });
    if let Err(status) = turned.await {
        panic!("/readyz still {status} after {:?}", t0.elapsed());
    }
    let (readyz_after, polls) = (t0.elapsed(), polls.get());
    assert!(readyz_after < Duration::from_millis(200), "/readyz 503 only after {readyz_after:?}");

    // During the delay the listener still accepts and serves (load balancers are still
    // deregistering the instance). The moments after the signal are the test.
    tokio::time::sleep_until((t0 + Duration::from_millis(400)).into()).await;
    let (status, _, body) = h1_get(public, "/").await;
    assert_eq!(status, 200, "a new request during the drain delay is served");
    assert_eq!(&body[..], b"ok");
    assert!(!goaway.is_finished(), "GOAWAY came before the drain delay was over");

    // After the delay the listeners are closed: connections are refused.
    tokio::time::sleep_until((t0 + Duration::from_millis(1500)).into()).await;
    match TcpStream::connect(public).await {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a new connection was accepted 1.5 s after SIGTERM (drain delay 1 s)"),
    }

    // The open HTTP/2 connections were told to go, and then closed.
    let got = tokio::time::timeout(Duration::from_secs(5), goaway)
        .await
        .expect("the HTTP/2 connection closed in time")
        .expect("task");
    let (at, code) = got.expect("the HTTP/2 connection ended without a GOAWAY frame");
    let goaway_after = at - t0;
    assert_eq!(code, 0, "GOAWAY with NO_ERROR");
    assert!(
        goaway_after >= Duration::from_millis(800) && goaway_after <= Duration::from_secs(4),
        "GOAWAY {goaway_after:?} after SIGTERM, expected once the 1 s delay is over"
    );
    let ended =
        tokio::time::timeout(Duration::from_secs(5), h2_conn).await.expect("h2 client ended").expect("task");
    assert!(ended - t0 >= Duration::from_millis(800), "the h2 client connection ended before the delay");
    assert!(h2.is_closed(), "the h2 client sees its connection closed");

    // The request in flight at the signal finished normally, and was told to close.
    let (status, connection, body) = tokio::time::timeout(Duration::from_secs(8), slow)
        .await
        .expect("slow request in time")
        .expect("task");
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"slow ok");
    assert_eq!(connection.as_deref(), Some("close"), "a draining HTTP/1.1 connection says Connection: close");

    let exit = proxy.wait_exit(Duration::from_secs(8)).expect("flowgate exited within 8 s of the drain");
    assert_eq!(exit.code(), Some(0), "exit status {exit}");
    eprintln!(
        "drain: /readyz 503 after {readyz_after:?} ({polls} polls), GOAWAY after {goaway_after:?}, \
         exited after {:?}",
        t0.elapsed()
    );
}
