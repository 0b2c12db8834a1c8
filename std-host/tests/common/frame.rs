//! Raw STOMP frame bytes as a test client writes them: no escaping and no checks, so
//! tests can send exactly what they mean (bad headers and huge bodies included).
//! Shared by `common` and `security_common` (which includes this file by path).

/// `command`, each `name:value` header and `body`, NUL-terminated, exactly as given.
pub fn frame_bytes(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(command.as_bytes());
    v.push(b'\n');
    for (n, val) in headers {
        v.extend_from_slice(n.as_bytes());
        v.push(b':');
        v.extend_from_slice(val.as_bytes());
        v.push(b'\n');
    }
    v.push(b'\n');
    v.extend_from_slice(body);
    v.push(0);
    v
}
