//! Authentication over real sockets: JWT (HS256, RS256, ES256) from the CONNECT passcode,
//! the CONNECT `Authorization` header and the WebSocket handshake (header, query
//! parameter, cookie); the static users file with argon2 hashes; anonymous access only
//! when configured; `sub` as the user name of `/user/` destinations; no secrets in ERROR
//! frames or logs.

mod security_common;

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use security_common::*;
use serde_json::json;
use stomp_relay::auth::AUTH_FAILED;

const SECRET: &str = "hs256-test-secret-do-not-leak";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs(sub: &str, exp_in: i64, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": (now() as i64 + exp_in)}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stomp-sec-auth-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn hs_config() -> stomp_relay::Config {
    let mut c = config();
    c.security.jwt_secret = Some(SECRET.into());
    c.security.token_query_param = Some("access_token".into());
    c.security.token_cookie = Some("relay_token".into());
    c
}

async fn ws_with(r: &Running, opts: WsOpts) -> Client {
    Client::ws(r.http, &opts).await.expect("handshake")
}

#[tokio::test]
async fn hs256_token_in_passcode() {
    let r = start(hs_config()).await;
    // Passing: a valid token.
    let mut c = ws_with(&r, WsOpts::default()).await;
    let f = c.connect(&[("passcode", &hs("alice", 60, SECRET))]).await;
    assert_eq!(f.command.as_str(), "CONNECTED", "{f:?}");
    assert_eq!(f.header("user-name"), Some("alice"), "{f:?}");

    // Failing: wrong secret, expired, garbage; each ERROR + close, no key material.
    for bad in [
        hs("alice", 60, "some-other-secret"),
        hs("alice", -600, SECRET),
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.".to_string(),
    ] {
        let mut c = ws_with(&r, WsOpts::default()).await;
        c.send_frame(
            "CONNECT",
            &[("accept-version", "1.2"), ("passcode", &bad)],
            b"",
        )
        .await;
        let f = c.expect_frame().await;
        assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
        assert_eq!(f.header("message"), Some(AUTH_FAILED));
        let whole = format!("{:?}{}", f.headers, String::from_utf8_lossy(&f.body));
        assert!(!whole.contains(SECRET) && !whole.contains(&bad), "{whole}");
        c.expect_only_close().await;
    }
}

#[tokio::test]
async fn hs256_token_in_connect_authorization_header_over_tcp() {
    let r = start(hs_config()).await;
    let mut c = Client::tcp(r.tcp).await;
    let auth = format!("Bearer {}", hs("bob", 60, SECRET));
    c.expect_connected(&[("Authorization", &auth)]).await;

    let mut c = Client::tcp(r.tcp).await;
    let auth = format!("Bearer {}", hs("bob", 60, "wrong"));
    let f = c.connect(&[("Authorization", &auth)]).await;
    assert_eq!(f.header("message"), Some(AUTH_FAILED), "{f:?}");
    c.expect_only_close().await;
}

#[tokio::test]
async fn token_from_the_websocket_handshake() {
    let r = start(hs_config()).await;
    let good = hs("carol", 60, SECRET);
    let bad = hs("carol", 60, "nope");
    let header = |t: &str| WsOpts {
        headers: vec![("Authorization".into(), format!("Bearer {t}"))],
        query: None,
    };
    let query = |t: &str| WsOpts {
        headers: vec![],
        query: Some(format!("access_token={t}")),
    };
    let cookie = |t: &str| WsOpts {
        headers: vec![("Cookie".into(), format!("theme=dark; relay_token={t}"))],
        query: None,
    };
    for make in [header, query, cookie] {
        let mut c = ws_with(&r, make(&good)).await;
        let f = c.connect(&[]).await;
        assert_eq!(f.command.as_str(), "CONNECTED", "{f:?}");
        assert_eq!(f.header("user-name"), Some("carol"));

        let mut c = ws_with(&r, make(&bad)).await;
        let f = c.connect(&[]).await;
        assert_eq!(f.header("message"), Some(AUTH_FAILED), "{f:?}");
        c.expect_only_close().await;
    }
    // A parameter name other than the configured one is not a credential.
    let mut c = ws_with(
        &r,
        WsOpts {
            headers: vec![],
            query: Some(format!("token={good}")),
        },
    )
    .await;
    let f = c.connect(&[]).await;
    assert_eq!(f.header("message"), Some(AUTH_FAILED), "{f:?}");
}

#[tokio::test]
async fn rs256_and_es256_public_keys() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/security_fixtures");
    let rsa_private = std::fs::read(fixtures.join("rsa_private.pem")).unwrap();
    let rsa_public = fixtures.join("rsa_public.pem");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ec_public = tmp("ec_public.pem");
    std::fs::write(&ec_public, ec.public_key_pem()).unwrap();
    let other_ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();

    let claims = json!({"sub": "dave", "exp": now() + 60});
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
    )
    .unwrap();
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let es_other = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(other_ec.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    // Algorithm confusion: HS256 "signed" with the RSA public key's bytes.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&std::fs::read(&rsa_public).unwrap()),
    )
    .unwrap();

    let mut c = config();
    c.security.jwt_public_key = Some(rsa_public);
    let r = start(c).await;
    let mut ok = Client::tcp(r.tcp).await;
    ok.expect_connected(&[("passcode", &rs)]).await;
    for bad in [&es, &confused] {
        let mut c = Client::tcp(r.tcp).await;
        assert_eq!(
            c.connect(&[("passcode", bad)]).await.header("message"),
            Some(AUTH_FAILED)
        );
    }

    let mut c = config();
    c.security.jwt_public_key = Some(ec_public);
    let r = start(c).await;
    let mut ok = Client::tcp(r.tcp).await;
    ok.expect_connected(&[("passcode", &es)]).await;
    for bad in [&es_other, &rs] {
        let mut c = Client::tcp(r.tcp).await;
        assert_eq!(
            c.connect(&[("passcode", bad)]).await.header("message"),
            Some(AUTH_FAILED)
        );
    }
}

/// Hashes with the shipped `stomp-relay-passwd` tool (password on stdin).
fn argon2_hash(pw: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stomp-relay-passwd"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

#[tokio::test]
async fn users_file_with_argon2_hashes() {
    let path = tmp("users.toml");
    std::fs::write(
        &path,
        format!(
            "[users.erin]\npassword = \"{}\"\nrooms = [\"ops\"]\n",
            argon2_hash("correct horse")
        ),
    )
    .unwrap();
    let mut c = config();
    c.security.users_file = Some(path);
    let r = start(c).await;

    let mut ok = Client::tcp(r.tcp).await;
    let f = ok
        .connect(&[("login", "erin"), ("passcode", "correct horse")])
        .await;
    assert_eq!(f.command.as_str(), "CONNECTED", "{f:?}");
    assert_eq!(f.header("user-name"), Some("erin"));

    for (login, pass) in [
        ("erin", "wrong"),
        ("mallory", "correct horse"),
        ("erin", ""),
    ] {
        let mut c = Client::tcp(r.tcp).await;
        let f = c.connect(&[("login", login), ("passcode", pass)]).await;
        assert_eq!(
            f.header("message"),
            Some(AUTH_FAILED),
            "{login}/{pass}: {f:?}"
        );
        c.expect_only_close().await;
    }
}

#[tokio::test]
async fn users_file_with_a_plain_password_is_refused_at_start() {
    let path = tmp("plain.toml");
    std::fs::write(&path, "[users.x]\npassword = \"hunter2\"\n").unwrap();
    let mut c = config();
    c.security.users_file = Some(path);
    let err = stomp_relay::Server::builder(c)
        .bind()
        .await
        .err()
        .expect("refused");
    let s = err.to_string();
    assert!(s.contains("--users-file") && s.contains("argon2"), "{s}");
    assert!(!s.contains("hunter2"), "{s}");
}

#[tokio::test]
async fn anonymous_only_when_allowed() {
    // Zero setup: anonymous is fine, `login` names the user.
    let r = start(config()).await;
    let mut c = Client::tcp(r.tcp).await;
    c.expect_connected(&[("login", "zed")]).await;
    let mut c = Client::tcp(r.tcp).await;
    c.expect_connected(&[]).await;

    // Authentication configured: no credentials is refused...
    let r = start(hs_config()).await;
    let mut c = Client::tcp(r.tcp).await;
    assert_eq!(c.connect(&[]).await.header("message"), Some(AUTH_FAILED));
    c.expect_only_close().await;

    // ...unless anonymous is switched on; wrong credentials still fail.
    let mut cfg = hs_config();
    cfg.security.allow_anonymous = Some(true);
    let r = start(cfg).await;
    let mut c = Client::tcp(r.tcp).await;
    let f = c.connect(&[]).await;
    assert_eq!(f.command.as_str(), "CONNECTED");
    assert_eq!(f.header("user-name"), None, "anonymous has no user name");
    let mut c = Client::tcp(r.tcp).await;
    let f = c.connect(&[("passcode", &hs("x", 60, "bad"))]).await;
    assert_eq!(f.header("message"), Some(AUTH_FAILED));

    // No authentication and anonymous switched off: nobody gets in.
    let mut cfg = config();
    cfg.security.allow_anonymous = Some(false);
    let r = start(cfg).await;
    let mut c = Client::tcp(r.tcp).await;
    assert_eq!(c.connect(&[]).await.header("message"), Some(AUTH_FAILED));
}

#[tokio::test]
async fn sub_claim_is_the_user_of_user_destinations() {
    let r = start(hs_config()).await;
    let mut alice = Client::tcp(r.tcp).await;
    alice
        .expect_connected(&[("passcode", &hs("alice", 60, SECRET))])
        .await;
    alice.try_subscribe("a", "/user/queue/notes").await.unwrap();
    let mut bob = Client::tcp(r.tcp).await;
    // `login` cannot override the token's subject.
    bob.expect_connected(&[("login", "alice"), ("passcode", &hs("bob", 60, SECRET))])
        .await;
    bob.try_subscribe("b", "/user/queue/notes").await.unwrap();
    bob.send_receipted("/user/alice/queue/notes", "for alice", "s1")
        .await
        .unwrap();
    assert_eq!(
        alice.message(WAIT).await.as_deref(),
        Some("for alice"),
        "alice gets her message"
    );
    assert_eq!(
        bob.message(Duration::from_millis(500)).await,
        None,
        "bob does not"
    );
}

/// The real binary at trace level: passcodes, tokens, the JWT secret and the relay's
/// broker passcode appear neither in ERROR frames nor anywhere in the log.
#[tokio::test]
async fn secrets_stay_out_of_logs_and_error_frames() {
    let bin = Traced::start(&["--jwt-secret", SECRET, "--allow-anonymous", "true"]).await;
    let tcp = bin.tcp;
    let user_pass = "user-passcode-that-is-secret";
    let bad_token = hs("eve", 60, "attacker-secret");
    let mut c = Client::tcp(tcp).await;
    let f = c
        .connect(&[("login", "eve"), ("passcode", user_pass)])
        .await;
    assert_eq!(f.header("message"), Some(AUTH_FAILED));
    let mut c = Client::tcp(tcp).await;
    let f = c
        .connect(&[("Authorization", &format!("Bearer {bad_token}"))])
        .await;
    assert_eq!(f.header("message"), Some(AUTH_FAILED));
    let mut c = Client::tcp(tcp).await;
    c.expect_connected(&[("passcode", &hs("ok", 60, SECRET))])
        .await;
    c.send_frame("DISCONNECT", &[], b"").await;
    let _ = c.next_event(Duration::from_millis(300)).await;
    drop(c);
    let log = bin.stop().await;
    assert!(log.contains("authentication failed"), "{log}");
    for secret in [SECRET, user_pass, &bad_token] {
        assert!(
            !log.contains(secret),
            "`{secret}` leaked into the log:\n{log}"
        );
    }
}

/// Relay mode with an unreachable broker: the client's ERROR and the log never carry the
/// relay's broker login/passcode.
#[tokio::test]
async fn relay_credentials_never_reach_clients_or_logs() {
    let relay_pass = "relay-broker-passcode-XYZ";
    let system_pass = "system-broker-passcode-QRS";
    // A port that refuses connections: bind, note it, close it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let relay = format!("stomp://{dead_addr}");
    let bin = Traced::start(&[
        "--broker",
        "relay",
        "--relay",
        &relay,
        "--relay-login",
        "relay-login-name",
        "--relay-passcode",
        relay_pass,
        "--system-passcode",
        system_pass,
    ])
    .await;
    let tcp = bin.tcp;
    let mut c = Client::tcp(tcp).await;
    let f = c
        .connect(&[("login", "client"), ("passcode", "client-pass")])
        .await;
    assert_eq!(f.command.as_str(), "ERROR", "{f:?}");
    let shown = format!("{:?} {}", f, String::from_utf8_lossy(&f.body));
    for secret in [relay_pass, system_pass, "relay-login-name"] {
        assert!(
            !shown.contains(secret),
            "{secret} reached the client: {shown}"
        );
    }
    let log = bin.stop().await;
    for secret in [relay_pass, system_pass, "client-pass"] {
        assert!(
            !log.contains(secret),
            "`{secret}` leaked into the log:\n{log}"
        );
    }
}

/// The real binary at trace level on loopback HTTP and TCP listeners, its log kept.
struct Traced {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    log: String,
    tcp: std::net::SocketAddr,
}

impl Traced {
    /// Starts it with `args` and waits for the log line naming its TCP listener.
    async fn start(args: &[&str]) -> Traced {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stomp-relay"))
            .args(["--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "trace")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = String::new();
        let tcp = tokio::time::timeout(WAIT, async {
            while let Some(l) = lines.next_line().await.unwrap() {
                log.push_str(&l);
                log.push('\n');
                if let Some(rest) = l.split("tcp=Some(").nth(1) {
                    return rest.split(')').next().unwrap().parse().unwrap();
                }
            }
            panic!("no listen line: {log}");
        })
        .await
        .unwrap();
        Traced {
            child,
            lines,
            log,
            tcp,
        }
    }

    /// Lets the log catch up, stops the binary and returns everything it logged.
    async fn stop(mut self) -> String {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.child.start_kill().unwrap();
        while let Ok(Ok(Some(l))) = tokio::time::timeout(WAIT, self.lines.next_line()).await {
            self.log.push_str(&l);
            self.log.push('\n');
        }
        self.log
    }
}
