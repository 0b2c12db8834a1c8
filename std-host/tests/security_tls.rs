//! TLS on the client listeners: `wss://` and STOMP over TLS on `--tcp-listen`, with a
//! certificate generated at test time (rcgen) and real rustls clients; plain clients
//! and clients that do not trust the certificate get nowhere; bad PEM files are clear
//! start-up errors.

mod security_common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use security_common::*;
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

struct Pki {
    cert: PathBuf,
    key: PathBuf,
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

fn pki(tag: &str) -> Pki {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("stomp-sec-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    Pki {
        cert,
        key,
        cert_der: ck.cert.der().clone(),
    }
}

fn connector(trust: Option<&rustls::pki_types::CertificateDer<'static>>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    if let Some(c) = trust {
        roots.add(c.clone()).unwrap();
    }
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    TlsConnector::from(Arc::new(cfg))
}

async fn tls_io(
    to: SocketAddr,
    trust: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> std::io::Result<Io> {
    let tcp = tokio::net::TcpStream::connect(to).await?;
    let s = connector(trust)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    Ok(Box::new(s))
}

async fn tls_server(p: &Pki) -> Running {
    let mut c = config();
    c.security.tls_cert = Some(p.cert.clone());
    c.security.tls_key = Some(p.key.clone());
    start(c).await
}

#[tokio::test]
async fn wss_with_a_trusted_certificate() {
    let p = pki("wss");
    let r = tls_server(&p).await;
    let io = tls_io(r.http, Some(&p.cert_der)).await.unwrap();
    let mut a = Client::ws_over(io, &format!("wss://{}/ws", r.http), &WsOpts::default())
        .await
        .expect("wss handshake");
    a.expect_connected(&[]).await;
    a.try_subscribe("1", "/topic/tls").await.unwrap();
    let io = tls_io(r.tcp, Some(&p.cert_der)).await.unwrap();
    let mut b = Client::raw(io);
    b.expect_connected(&[]).await;
    b.send_receipted("/topic/tls", "over TLS both ways", "r")
        .await
        .unwrap();
    assert_eq!(a.message(WAIT).await.as_deref(), Some("over TLS both ways"));
}

#[tokio::test]
async fn plain_and_untrusting_clients_get_nowhere() {
    let p = pki("refuse");
    let r = tls_server(&p).await;
    // Plain WebSocket to the TLS listener: no HTTP answer.
    let plain = tokio::time::timeout(WAIT, Client::ws(r.http, &WsOpts::default()))
        .await
        .expect("bounded");
    assert!(plain.is_err(), "plain ws accepted on a TLS listener");
    // Plain STOMP to the TLS TCP listener: no CONNECTED (at most a TLS alert).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut t = tokio::net::TcpStream::connect(r.tcp).await.unwrap();
        t.write_all(&frame_bytes("CONNECT", &[("accept-version", "1.2")], b""))
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), t.read_to_end(&mut got)).await;
        assert!(
            !String::from_utf8_lossy(&got).contains("CONNECTED"),
            "plain client got {got:?}"
        );
    }
    // A client that does not trust the certificate fails the handshake.
    assert!(tls_io(r.http, None).await.is_err());
    assert!(tls_io(r.tcp, None).await.is_err());
}

#[tokio::test]
async fn bad_pem_files_are_clear_errors() {
    let p = pki("bad");
    let junk = p.cert.with_file_name("junk.pem");
    std::fs::write(&junk, "not pem\n").unwrap();
    let mut c = config();
    c.security.tls_cert = Some(junk.clone());
    c.security.tls_key = Some(p.key.clone());
    let e = stomp_relay::Server::builder(c).bind().await.err().unwrap();
    assert!(e.to_string().contains("--tls-cert"), "{e}");
    let mut c = config();
    c.security.tls_cert = Some(p.cert.clone());
    c.security.tls_key = Some(junk);
    let e = stomp_relay::Server::builder(c).bind().await.err().unwrap();
    assert!(e.to_string().contains("--tls-key"), "{e}");
    // One without the other is a config error naming the flag.
    let e = stomp_relay::Config::from_args(["x", "--tls-cert", "/tmp/x.pem"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-cert") && e.contains("--tls-key"), "{e}");
}
