//! The real binary listening beyond loopback (issue 19.6), in a network namespace this
//! test makes (`unshare --net`, with 10.77.0.1, not a loopback address, on its own `lo`):
//! nothing outside the namespace can reach it. Without `--api-key` / `--admin-token` the publish API, the
//! dashboard and `/api/stats` are disabled with a 403 naming the flag; with them they
//! work as on loopback; CORS preflight answers the `--allowed-origin` list only.

use std::process::Command;

/// Runs the binary with `args` inside a fresh network namespace and performs
/// `requests` (method, path, headers) against it; returns one line per request:
/// `status|allow-origin header|body`.
/// One request: method, path, headers.
type Request<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

fn inside_namespace(args: &[&str], requests: &[Request<'_>]) -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_stomp-relay");
    let client = r#"
import json, sys, time, urllib.request, urllib.error
base = "http://10.77.0.1:18080"
for _ in range(200):
    try:
        urllib.request.urlopen(base + "/healthz", timeout=1); break
    except Exception:
        time.sleep(0.05)
for method, path, headers in json.loads(sys.argv[1]):
    body = b'{"destination": "/sub/x", "body": "hi"}' if method == "POST" else None
    req = urllib.request.Request(base + path, data=body, method=method, headers=dict(headers))
    try:
        r = urllib.request.urlopen(req, timeout=5)
        status, h, text = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, h, text = e.code, e.headers, e.read()
    text = text.decode("utf-8", "replace").replace("\n", " ")[:300]
    print(f"{status}|{h.get('access-control-allow-origin') or ''}|{text}")
"#;
    let reqs: Vec<serde_json::Value> = requests
        .iter()
        .map(|(m, p, h)| {
            let h: Vec<[&str; 2]> = h.iter().map(|(k, v)| [*k, *v]).collect();
            serde_json::json!([m, p, h])
        })
        .collect();
    let script = format!(
        r#"set -e
ip link set lo up
ip addr add 10.77.0.1/32 dev lo
"{bin}" --listen 10.77.0.1:18080 {args} 2>server.log &
python3 -c "$CLIENT" "$REQS"
kill %1
"#,
        args = args
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("stomp-relay-beyond-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("unshare")
        .args(["--net", "bash", "-c", &script])
        .current_dir(&dir)
        .env("CLIENT", client)
        .env("REQS", serde_json::Value::Array(reqs).to_string())
        .output()
        .expect("run unshare (util-linux)");
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "namespace run failed (needs root for unshare --net and ip):\n{}\n{}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), requests.len(), "{lines:?}\nserver log:\n{log}");
    // The warning names what is disabled and the flag that enables it.
    if !args.contains(&"--api-key") {
        assert!(
            log.contains("POST /api/publish disabled") && log.contains("--api-key"),
            "{log}"
        );
    }
    lines
}

#[test]
fn api_and_dashboard_are_disabled_beyond_loopback_without_secrets() {
    let got = inside_namespace(
        &[],
        &[
            (
                "POST",
                "/api/publish",
                &[("content-type", "application/json")],
            ),
            ("GET", "/dashboard", &[]),
            ("GET", "/api/stats", &[]),
            ("GET", "/", &[]),
        ],
    );
    assert!(
        got[0].starts_with("403||") && got[0].contains("--api-key"),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with("403||") && got[1].contains("--admin-token"),
        "{}",
        got[1]
    );
    assert!(
        got[2].starts_with("403||") && got[2].contains("--admin-token"),
        "{}",
        got[2]
    );
    // The chat page itself stays (it only talks STOMP, with the same checks as any client).
    assert!(got[3].starts_with("200||"), "{}", got[3]);
}

#[test]
fn secrets_enable_them_and_cors_answers_listed_origins_only() {
    let key = ("x-api-key", "k3y");
    let json = ("content-type", "application/json");
    let listed = ("origin", "https://app.example.com");
    let preflight: &[(&str, &str)] = &[
        listed,
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type,x-api-key"),
    ];
    let got = inside_namespace(
        &[
            "--api-key",
            "k3y",
            "--admin-token",
            "adm1n",
            "--allowed-origin",
            "https://*.example.com",
        ],
        &[
            ("POST", "/api/publish", &[json]),
            ("POST", "/api/publish", &[json, key]),
            ("GET", "/api/stats", &[("authorization", "Bearer adm1n")]),
            ("OPTIONS", "/api/publish", preflight),
            ("POST", "/api/publish", &[json, key, listed]),
            (
                "OPTIONS",
                "/api/publish",
                &[
                    ("origin", "https://evil.example.net"),
                    ("access-control-request-method", "POST"),
                ],
            ),
        ],
    );
    assert!(got[0].starts_with("401||"), "{}", got[0]);
    assert!(got[1].starts_with("202||"), "{}", got[1]);
    assert!(
        got[2].starts_with("200||") && got[2].contains("\"sessions\""),
        "{}",
        got[2]
    );
    assert!(
        got[3].starts_with("200|https://app.example.com|"),
        "preflight from a listed origin: {}",
        got[3]
    );
    assert!(
        got[4].starts_with("202|https://app.example.com|"),
        "{}",
        got[4]
    );
    assert!(
        got[5].split('|').nth(1) == Some(""),
        "no CORS grant for an unlisted origin: {}",
        got[5]
    );
}
