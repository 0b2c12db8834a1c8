//! A chat service embedding stomp-relay: `cargo run --example chat -p stomp-relay`,
//! then open http://127.0.0.1:8080/ in two browser tabs.
//!
//! - `SEND /pub/chat/{room}` goes through a handler (`@MessageMapping`) that stamps the
//!   sender and time and publishes to `/sub/chat/{room}` (`@SendTo`); a message starting
//!   with `/me ` becomes an action line.
//! - `SEND /pub/private/{user}` is delivered only to that user's sessions on
//!   `/user/queue/private` (`@SendToUser`), with a copy to the sender.
//! - `SUBSCRIBE /pub/rooms` is answered once with the room list (`@SubscribeMapping`).
//! - A background task publishes a clock tick to `/sub/chat/lobby` every 30 s through
//!   the [`stomp_relay::Publisher`] (`SimpMessagingTemplate`), and `POST /announce`
//!   publishes its body from plain HTTP.
//!
//! The user is the CONNECT's `login` header; an empty or missing login is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use stomp_relay::{Config, Payload, Publisher, Reply, Server};

const ROOMS: &[&str] = &["lobby", "rust", "random"];

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    // The same flags, STOMP_RELAY_* variables and config file as the server binary.
    let config = Config::from_env_and_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(e.exit_code());
    });

    let builder = Server::builder(config)
        .authenticator(|connect| match connect.header_str("login") {
            Some(l) if !l.trim().is_empty() => Ok(Some(l.trim().to_string())),
            _ => Err("Pick a nickname: CONNECT needs a login header".into()),
        })
        .message_mapping("/pub/chat/{room}", |m| {
            let room = m.var("room").unwrap_or("lobby");
            if !ROOMS.contains(&room) {
                return Vec::new();
            }
            let user = m.user.clone().unwrap_or_else(|| "anonymous".into());
            let text = m.body_text();
            let line = match text.strip_prefix("/me ") {
                Some(action) => format!("* {user} {action}"),
                None => format!("<{user}> {text}"),
            };
            vec![Reply::publish(format!("/sub/chat/{room}"), line)
                .header("sender", user)
                .header("sent-at", now_secs().to_string())
                .header("content-type", "text/plain;charset=UTF-8")]
        })
        .message_mapping("/pub/private/{to}", |m| {
            let from = m.user.clone().unwrap_or_default();
            let to = m.var("to").unwrap_or_default().to_string();
            let line = format!("[{from} -> {to}] {}", m.body_text());
            vec![
                Reply::to_user(to, "/queue/private", line.clone()).header("sender", &from),
                Reply::to_user(from.clone(), "/queue/private", line).header("sender", &from),
            ]
        })
        .subscribe_mapping("/pub/rooms", |_| {
            Some(Payload::new(ROOMS.join(",")).header("content-type", "text/plain"))
        });

    let server = builder
        .http_routes(|publisher| {
            axum::Router::new()
                .route("/", get(|| async { Html(PAGE) }))
                .route("/announce", post(announce))
                .with_state(publisher)
        })
        .bind()
        .await?;
    let publisher = server.publisher();

    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            tick.tick().await;
            let _ = publisher.publish(
                "/sub/chat/lobby",
                &[("sender", "clock")],
                format!("* the clock says {}", now_secs()),
            );
        }
    });

    println!(
        "chat on http://{}/ (STOMP at ws://{}/ws)",
        server.local_addr(),
        server.local_addr()
    );
    server.run_until_signal().await
}

async fn announce(State(p): State<Publisher>, body: String) -> (axum::http::StatusCode, String) {
    match p.publish(
        "/sub/chat/lobby",
        &[("sender", "announce")],
        format!("!! {body}"),
    ) {
        Ok(()) => (axum::http::StatusCode::OK, "published\n".into()),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}\n"),
        ),
    }
}

/// A dependency-free page: a minimal STOMP 1.2 client over the browser's WebSocket.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>stomp-relay chat</title>
<style>body{font:15px system-ui;margin:2em}#log{height:50vh;overflow:auto;border:1px solid #ccc;padding:.5em;white-space:pre-wrap}</style>
<h1>stomp-relay chat</h1>
<p>Nick <input id="nick" value="guest"> Room <select id="room"></select> <button id="join">Join</button></p>
<div id="log"></div>
<p><input id="text" size="60" placeholder="message, /me action, or @user private"> <button id="send">Send</button></p>
<script>
let ws, room, buf = "";
const log = t => { const l = document.getElementById("log"); l.textContent += t + "\n"; l.scrollTop = 1e9; };
const frame = (cmd, h, body = "") => cmd + "\n" + Object.entries(h).map(([k, v]) => k + ":" + v).join("\n") + "\n\n" + body + "\0";
function onFrame(f) {
  const [head, ...rest] = f.split("\n\n"); const lines = head.split("\n"); const cmd = lines.shift();
  const h = Object.fromEntries(lines.map(l => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
  const body = rest.join("\n\n");
  if (cmd === "MESSAGE" && h.destination === "/pub/rooms") {
    const sel = document.getElementById("room"); sel.innerHTML = "";
    body.split(",").forEach(r => sel.add(new Option(r, r)));
  } else if (cmd === "MESSAGE") log(body);
  else if (cmd === "ERROR") log("ERROR: " + h.message);
}
document.getElementById("join").onclick = () => {
  if (ws) ws.close();
  ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws", ["v12.stomp"]);
  ws.onopen = () => {
    ws.send(frame("CONNECT", {"accept-version": "1.2", host: location.hostname, login: document.getElementById("nick").value, "heart-beat": "0,0"}));
    ws.send(frame("SUBSCRIBE", {id: "rooms", destination: "/pub/rooms"}));
    ws.send(frame("SUBSCRIBE", {id: "private", destination: "/user/queue/private"}));
    room = document.getElementById("room").value || "lobby";
    ws.send(frame("SUBSCRIBE", {id: "room", destination: "/sub/chat/" + room}));
    log("joined " + room);
  };
  ws.onmessage = e => { buf += e.data; let i; while ((i = buf.indexOf("\0")) >= 0) { const f = buf.slice(0, i).replace(/^\n+/, ""); buf = buf.slice(i + 1); if (f) onFrame(f); } };
  ws.onclose = e => log("closed " + e.code);
};
document.getElementById("send").onclick = () => {
  const t = document.getElementById("text").value; document.getElementById("text").value = "";
  const m = t.match(/^@(\S+)\s+(.*)$/);
  ws.send(m ? frame("SEND", {destination: "/pub/private/" + m[1]}, m[2]) : frame("SEND", {destination: "/pub/chat/" + room}, t));
};
</script>
"#;
