//! Config merging: flags, environment and file, and the one-line errors naming what to fix.

use super::security::OnSendDenied;
use super::*;

#[test]
fn defaults_without_arguments() {
    let c = Config::from_args(["stomp-relay"]).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.limits.max_frame_size, 65536);
    assert_eq!(c.limits.send_buffer, 512 * 1024);
}

#[test]
fn flags_parse() {
    let c = Config::from_args([
        "stomp-relay",
        "--listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:6000",
        "--app-prefix",
        "/app/,/pub/",
        "--broker-prefix",
        "/topic/",
        "--broker-prefix",
        "/queue/",
        "--broker",
        "relay",
        "--relay",
        "stomp://127.0.0.1:61613,stomps://[::1]:61614",
        "--dialect",
        "rabbitmq",
        "--relay-mode",
        "shared",
        "--heartbeat",
        "5000,0",
        "--max-frame-size",
        "128KiB",
        "--send-time-limit",
        "2s",
    ])
    .unwrap();
    assert_eq!(c.tcp_listen, Some("127.0.0.1:6000".parse().unwrap()));
    assert_eq!(c.app_prefixes, vec!["/app/", "/pub/"]);
    assert_eq!(c.broker_prefixes, vec!["/topic/", "/queue/"]);
    assert_eq!(c.broker, BrokerKind::Relay);
    assert_eq!(c.relay.len(), 2);
    assert!(c.relay[1].tls);
    assert_eq!(c.relay[1].host, "::1");
    assert_eq!(c.relay[1].to_string(), "stomps://[::1]:61614");
    assert_eq!(c.dialect, Some(Dialect::RabbitMq));
    assert_eq!(c.relay_mode, RelayMode::Shared);
    assert_eq!(
        c.heartbeat,
        HeartBeat {
            send_ms: 5000,
            recv_ms: 0
        }
    );
    assert_eq!(c.limits.max_frame_size, 128 * 1024);
    assert_eq!(c.limits.send_time_limit, Duration::from_secs(2));
}

#[test]
fn file_then_flag_precedence() {
    let dir = std::env::temp_dir().join(format!("stomp-relay-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9000\"\nbroker-prefix = [\"/topic/\"]\nmax-frame-size = 1024\nsend-time-limit = \"3s\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let c = Config::from_args(["x", "--config", p]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.broker_prefixes, vec!["/topic/"]);
    assert_eq!(c.limits.max_frame_size, 1024);
    assert_eq!(c.limits.send_time_limit, Duration::from_secs(3));
    let c = Config::from_args(["x", "--config", p, "--listen", "127.0.0.1:9001"]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
}

#[test]
fn bad_key_is_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("stomp-relay-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nlisen = 3\n").unwrap();
    let e = Config::from_args(["x", "--config", path.to_str().unwrap()]).unwrap_err();
    let s = e.to_string();
    assert_eq!(e.exit_code(), 2);
    assert!(s.contains("lisen"), "{s}");
    assert!(s.contains("line 2"), "{s}");
    assert_eq!(s.lines().count(), 1, "{s}");
}

#[test]
fn bad_values_name_their_source() {
    let e = Config::from_args(["x", "--heartbeat", "10"]).unwrap_err();
    assert!(e.to_string().contains("--heartbeat"), "{e}");
    let e = Config::from_args(["x", "--relay", "http://x:1"]).unwrap_err();
    assert!(e.to_string().contains("--relay"), "{e}");
    let e = Config::from_args(["x", "--app-prefix", "pub"]).unwrap_err();
    assert!(e.to_string().contains("--app-prefix"), "{e}");
    let e = Config::from_args(["x", "--bogus"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("--bogus"), "{e}");
}

#[test]
fn debug_never_shows_secrets() {
    let secrets = [
        "relay-pass-0xA1",
        "system-pass-0xB2",
        "jwt-secret-0xC3",
        "admin-token-0xD4",
        "api-key-0xE5",
    ];
    let args = [
        "x",
        "--relay-passcode",
        secrets[0],
        "--system-passcode",
        secrets[1],
        "--jwt-secret",
        secrets[2],
        "--admin-token",
        secrets[3],
        "--api-key",
        secrets[4],
    ];
    let c = Config::from_args(args).unwrap();
    // The values are really configured (so the check below means something)...
    assert_eq!(c.relay_passcode.expose(), secrets[0]);
    assert_eq!(c.security.jwt_secret.as_deref(), Some(secrets[2]));
    assert_eq!(c.api_key.as_deref(), Some(secrets[4]));
    // ...yet no Debug rendering of the config, the parsed flags or the relay
    // options shows any of them.
    let shown = [
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{:?}", Cli::try_parse_from(args).unwrap()),
        format!("{:?}", crate::relay::RelayOptions::from_config(&c)),
    ];
    for text in &shown {
        for s in secrets {
            assert!(!text.contains(s), "`{s}` leaked in {text}");
        }
        assert!(text.contains("***"), "{text}");
    }
}

#[test]
fn relay_ca_is_loaded_at_startup_and_errors_name_it() {
    let dir = std::env::temp_dir().join(format!("stomp-relay-cfg-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = Config::from_args(["x", "--relay-ca", "/nonexistent/ca.pem"]).unwrap_err();
    let s = e.to_string();
    assert_eq!(e.exit_code(), 2);
    assert!(
        s.contains("--relay-ca") && s.contains("/nonexistent/ca.pem"),
        "{s}"
    );
    assert_eq!(s.lines().count(), 1, "{s}");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let toml = dir.join("ca.toml");
    std::fs::write(
        &toml,
        format!("relay-ca = {:?}\n", not_pem.to_str().unwrap()),
    )
    .unwrap();
    let e = Config::from_args(["x", "--config", toml.to_str().unwrap()]).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("`relay-ca`") && s.contains("no PEM certificate"),
        "{s}"
    );
    assert_eq!(Config::from_args(["x"]).unwrap().relay_ca, None);
}

#[test]
fn endpoints_and_sockjs_from_flags_and_file() {
    let c = Config::from_args(["x"]).unwrap();
    assert_eq!((c.endpoints, c.sockjs), (vec!["/ws".to_string()], None));
    let c = Config::from_args([
        "x",
        "--endpoint",
        "/ws",
        "--endpoint",
        "/ws-stomp/",
        "--sockjs",
        "--sockjs-heartbeat",
        "2s",
    ])
    .unwrap();
    assert_eq!(c.endpoints, ["/ws", "/ws-stomp"]);
    let sockjs = c.sockjs.unwrap();
    assert_eq!(sockjs.heartbeat, Duration::from_secs(2));
    assert_eq!(sockjs.disconnect_delay, Duration::from_secs(5));
    assert_eq!(
        Config::from_args(["x", "--sockjs", "false"])
            .unwrap()
            .sockjs,
        None
    );

    let dir = std::env::temp_dir().join(format!("stomp-relay-cfg-ep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("endpoints.toml");
    std::fs::write(
        &toml,
        "endpoint = [\"/stomp\", \"/app/ws\"]\nsockjs = true\nsockjs-disconnect-delay = \"1s\"\n",
    )
    .unwrap();
    let c = Config::from_args(["x", "--config", toml.to_str().unwrap()]).unwrap();
    assert_eq!(c.endpoints, ["/stomp", "/app/ws"]);
    assert_eq!(c.sockjs.unwrap().disconnect_delay, Duration::from_secs(1));
}

#[test]
fn bad_endpoints_name_the_flag_and_the_path() {
    for (arg, why) in [
        ("ws", "must be a path"),
        ("/", "must be a path"),
        ("/a b", "may hold only"),
        ("/ws/{x}", "may hold only"),
        ("/metrics", "server's own /metrics"),
        ("/api/ws", "server's own /api"),
        ("/ws,/ws/", "given twice"),
        ("/ws,/ws/a/b/c", "nested"),
    ] {
        let e = Config::from_args(["x", "--endpoint", arg]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("--endpoint") && s.contains(why), "{arg}: {s}");
        assert_eq!(e.exit_code(), 2);
    }
    let e = Config::from_args(["x", "--sockjs", "--sockjs-heartbeat", "0"]).unwrap_err();
    assert!(e.to_string().contains("--sockjs-heartbeat"), "{e}");
}

#[test]
fn proxies_from_flags_and_the_proxy_table() {
    let c = Config::from_args([
        "x",
        "--app-proxy",
        "/pub/chat/**=http://127.0.0.1:3000/app",
        "--app-proxy",
        "http://127.0.0.1:3000/other",
        "--proxy-timeout",
        "2s",
    ])
    .unwrap();
    assert_eq!(c.proxy.app.len(), 2);
    assert_eq!(c.proxy.app[0].pattern, "/pub/chat/**");
    assert_eq!(c.proxy.app[1].pattern, "/**");
    assert_eq!(c.proxy.timeout, Duration::from_secs(2));
    let dir = std::env::temp_dir().join(format!("proxy-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("c.toml");
    std::fs::write(&toml, "[proxy]\nconnect-proxy = \"localhost:3000\"\n").unwrap();
    let e = Config::from_args(["x", "--config", toml.to_str().unwrap()]).unwrap_err();
    assert!(
        e.to_string().contains("config key `proxy.connect-proxy`"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);
    std::fs::write(&toml, "[proxy]\nconect-proxy = \"http://x\"\n").unwrap();
    let e = Config::from_args(["x", "--config", toml.to_str().unwrap()]).unwrap_err();
    assert!(e.to_string().contains("conect-proxy"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn security_and_authorization_tables_under_the_flags() {
    let dir = std::env::temp_dir().join(format!("stomp-relay-cfg-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("s.toml");
    std::fs::write(
        &toml,
        "[security]\nallowed-origin = \"https://a.example, https://b.example\"\n\
         header-read-timeout = 2500\nmax-subscriptions = 7\n\
         [authorization]\non-send-denied = \"error\"\n\
         [[authorization.rules]]\nrule = \"deny send /sub/**\"\n",
    )
    .unwrap();
    let p = toml.to_str().unwrap();
    let c = Config::from_args(["x", "--config", p]).unwrap().security;
    assert_eq!(
        c.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    assert_eq!(c.header_read_timeout, Duration::from_millis(2500));
    assert_eq!(c.max_subscriptions, 7);
    assert_eq!(c.on_send_denied, OnSendDenied::Error);
    assert_eq!(c.rules.len(), 1);
    // Flags win key by key; the rest of the table still applies.
    let c = Config::from_args([
        "x",
        "--config",
        p,
        "--max-subscriptions",
        "9",
        "--on-send-denied",
        "close",
        "--rule",
        "allow send /sub/**",
        "--rule",
        "deny subscribe /sub/**",
    ])
    .unwrap()
    .security;
    assert_eq!(c.max_subscriptions, 9);
    assert_eq!(c.header_read_timeout, Duration::from_millis(2500));
    assert_eq!(c.on_send_denied, OnSendDenied::Close);
    assert_eq!(c.rules.len(), 2);
    // The flag takes the same comma-separated form and replaces the file's list.
    let c = Config::from_args([
        "x",
        "--config",
        p,
        "--allowed-origin",
        "https://c.example,https://*.d.example",
    ])
    .unwrap()
    .security;
    assert_eq!(
        c.allowed_origins,
        ["https://c.example", "https://*.d.example"]
    );

    // A bad value names the table's key; rules belong to [authorization], and the file
    // cannot name another config file.
    for (text, named) in [
        (
            "[security]\nheader-read-timeout = \"soon\"\n",
            "config key `security.header-read-timeout`",
        ),
        (
            "[security]\ntls-key = \"/k.pem\"\n",
            "config key `security.tls-key`",
        ),
        ("[security]\nrules = [\"deny send /**\"]\n", "rules"),
        ("config = \"other.toml\"\n", "config"),
        (
            "listen = \"8080\"\n",
            "is not an address like 127.0.0.1:8080",
        ),
    ] {
        std::fs::write(&toml, text).unwrap();
        let e = Config::from_args(["x", "--config", p]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains(named), "{text}: {s}");
        assert_eq!((e.exit_code(), s.lines().count()), (2, 1), "{s}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn worker_threads_from_flag_or_file_and_zero_names_the_source() {
    let c = Config::from_args(["x"]).unwrap();
    assert_eq!(c.worker_threads, None);
    let c = Config::from_args(["x", "--worker-threads", "1"]).unwrap();
    assert_eq!(c.worker_threads.map(|n| n.get()), Some(1));
    let e = Config::from_args(["x", "--worker-threads", "0"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("--worker-threads"), "{e}");

    let dir = std::env::temp_dir().join(format!("stomp-relay-cfg-wt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.toml");
    std::fs::write(&path, "worker-threads = 3\n").unwrap();
    let c = Config::from_args(["x", "--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(c.worker_threads.map(|n| n.get()), Some(3));
    std::fs::write(&path, "worker-threads = 0\nmax-frame-size = 100\n").unwrap();
    let e = Config::from_args(["x", "--config", path.to_str().unwrap()]).unwrap_err();
    assert!(e.to_string().contains("config key `max-frame-size`"), "{e}");
    std::fs::write(&path, "worker-threads = 0\n").unwrap();
    let e = Config::from_args(["x", "--config", path.to_str().unwrap()]).unwrap_err();
    assert!(e.to_string().contains("config key `worker-threads`"), "{e}");
}
