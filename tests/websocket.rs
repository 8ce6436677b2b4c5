//! An HTTP/1.1 `Upgrade: websocket` goes through the proxy and the
//! origin's echo of text and binary messages comes back over the tunnel.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{get, h1_client};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const LIMIT: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open(url: &str) -> Ws {
    let (ws, resp) = timeout(LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("WebSocket handshake in time")
        .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    // The 101 came through the proxy, not straight from the origin.
    assert_eq!(resp.headers().get("x-flowgate-region").map(|v| v.as_bytes()), Some(&b"us-east-1"[..]));
    ws
}

/// Sends `msg` and waits for the next data message, which must be the same.
async fn echo(ws: &mut Ws, msg: Message) {
    timeout(LIMIT, ws.send(msg.clone())).await.expect("send in time").expect("send");
    // Control frames (ping/pong) may come in between; a bounded number are skipped.
    for _ in 0..16 {
        let got = timeout(LIMIT, ws.next())
            .await
            .expect("echo in time")
            .expect("the tunnel stays open")
            .expect("a valid frame");
        if got.is_ping() || got.is_pong() {
            continue;
        }
        assert_eq!(got, msg, "echo differs");
        return;
    }
    panic!("no data message among the frames received");
}

fn text(i: usize) -> Message {
    Message::text(format!("hello #{i} through flowgate ✓"))
}

fn binary(i: usize, len: usize) -> Message {
    Message::binary((0..len).map(|j| ((i * 31 + j) % 256) as u8).collect::<Vec<u8>>())
}

#[tokio::test]
async fn websocket_echoes_text_and_binary() {
    let (o, p) = support::fronted("").await;
    let url = format!("ws://{}/ws", p.addrs.public);
    let mut ws = open(&url).await;

    for i in 0..8 {
        echo(&mut ws, text(i)).await;
        echo(&mut ws, binary(i, 1 + i * 1000)).await;
    }
    // A message far larger than one read buffer, so the tunnel copies it in pieces.
    echo(&mut ws, binary(99, 512 * 1024)).await;
    echo(&mut ws, Message::text("")).await;
    assert_eq!(o.hits.load(Ordering::SeqCst), 1, "one upgrade request reached the origin");

    let _ = timeout(LIMIT, ws.close(None)).await;
    // Closing the socket ends the tunnel, so the drain below does not wait for it.
    drop(ws);
    p.stop().await;
}

#[tokio::test]
async fn websocket_tunnels_are_independent_and_plain_requests_still_work() {
    let (_o, p) = support::fronted("").await;
    let url = format!("ws://{}/ws", p.addrs.public);
    let mut a = open(&url).await;
    let mut b = open(&url).await;

    // Interleaved on two tunnels: each gets only its own echoes.
    for i in 0..5 {
        echo(&mut a, Message::text(format!("a{i}"))).await;
        echo(&mut b, Message::text(format!("b{i}"))).await;
        echo(&mut b, binary(i, 300)).await;
        echo(&mut a, binary(i + 100, 300)).await;
    }
    // Ordinary traffic is unaffected while the tunnels are open.
    let (status, _, body) = get(&h1_client(), &p.url("/")).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"ok");
    echo(&mut a, Message::text("still open")).await;

    let _ = timeout(LIMIT, a.close(None)).await;
    let _ = timeout(LIMIT, b.close(None)).await;
    drop((a, b));
    p.stop().await;
}
