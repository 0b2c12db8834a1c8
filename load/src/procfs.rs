//! What the tool reads from Linux `/proc`: a server's resident memory, thread count and
//! CPU time, finding a server by process name, its open-files limit, and how many
//! established TCP connections given processes hold to a port (the broker connections a
//! relay uses).

use std::collections::HashSet;
use std::fs;

/// Memory and threads of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// `Threads`.
    pub threads: u64,
}

/// Reads `/proc/<pid>/status`.
pub fn sample(pid: u32) -> Result<ProcSample, String> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_status(&text).ok_or_else(|| format!("{path}: no VmRSS/Threads lines"))
}

fn parse_status(text: &str) -> Option<ProcSample> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(ProcSample {
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
    })
}

/// CPU time (user + system, all threads) `pid` has used so far.
pub fn cpu_time(pid: u32) -> Result<std::time::Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_cpu_ticks(&text)
        // /proc reports in USER_HZ, which is 100 on every Linux ABI.
        .map(|ticks| std::time::Duration::from_millis(ticks * 10))
        .ok_or_else(|| format!("{path}: unexpected format"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The pid of the one process whose `comm` is `name` (e.g. `stomp-relay`, `beam.smp`,
/// `java`). When several match (`rabbitmqctl` also runs a `beam.smp`), the one that
/// listens on `port` wins; still several is an error that lists them.
pub fn find_by_name(name: &str, port: Option<u16>) -> Result<u32, String> {
    let mut found = Vec::new();
    let dir = fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
            // comm is truncated to 15 bytes by the kernel.
            let comm = comm.trim_end();
            if comm == name || (comm.len() == 15 && name.starts_with(comm)) {
                found.push(pid);
            }
        }
    }
    if found.len() > 1 {
        if let Some(port) = port {
            let listeners = listening_inodes(port);
            found.retain(|&pid| socket_inodes(pid).iter().any(|i| listeners.contains(i)));
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => Err(format!(
            "--server-name: no process named `{name}` (listening on the target port)"
        )),
        many => Err(format!(
            "--server-name: {} processes named `{name}` ({many:?}); pass --server-pid",
            many.len()
        )),
    }
}

/// The process listening on `port` (the server behind a target URL).
pub fn listener_of(port: u16) -> Result<u32, String> {
    let listeners = listening_inodes(port);
    let dir = fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .find(|&pid| socket_inodes(pid).iter().any(|i| listeners.contains(i)))
        .ok_or_else(|| format!("no process of this user listens on port {port}; pass --server-pid"))
}

/// Socket inodes of the LISTEN sockets on `port`.
fn listening_inodes(port: u16) -> HashSet<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let local_port = cols
                        .get(1)?
                        .rsplit_once(':')
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())?;
                    (cols.get(3)? == &"0A" && local_port == port)
                        .then(|| cols.get(9)?.parse::<u64>().ok())
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Socket inodes `pid` holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return inodes;
    };
    for fd in fds.flatten() {
        if let Ok(link) = fs::read_link(fd.path()) {
            let link = link.to_string_lossy();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

/// The soft open-files limit of `pid`, if readable.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    soft.parse().ok()
}

/// Established TCP connections to `port` (their remote end) held by the processes
/// `pids`, over IPv4 and IPv6: the broker connections a relay uses, without counting
/// anyone else's connections to the same broker.
///
/// Counted by socket inode: the kernel writes `/proc/net/tcp` a page per read and
/// resumes by position, so a table that changes while it is read (a busy broker host)
/// can show one socket twice.
pub fn established_to_port(port: u16, pids: &[u32]) -> usize {
    let inodes: HashSet<u64> = pids.iter().flat_map(|&p| socket_inodes(p)).collect();
    let tables: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .collect();
    count_established_to(&tables, port, &inodes)
}

fn count_established_to(tables: &[String], port: u16, inodes: &HashSet<u64>) -> usize {
    let seen: HashSet<u64> = tables
        .iter()
        .flat_map(|t| established_to(t, port, inodes))
        .collect();
    seen.len()
}

fn established_to<'a>(
    table: &'a str,
    port: u16,
    inodes: &'a HashSet<u64>,
) -> impl Iterator<Item = u64> + 'a {
    table.lines().skip(1).filter_map(move |line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode;
        // addresses are HEXIP:HEXPORT.
        let to_port = cols.get(2)?.rsplit_once(':')?.1;
        let inode = cols.get(9)?.parse::<u64>().ok()?;
        (cols[3] == "01" && u16::from_str_radix(to_port, 16) == Ok(port) && inodes.contains(&inode))
            .then_some(inode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_threads() {
        let s = parse_status("Name:\tx\nVmRSS:\t  12345 kB\nThreads:\t7\n").unwrap();
        assert_eq!(
            s,
            ProcSample {
                rss_kib: 12345,
                threads: 7
            }
        );
        assert!(sample(std::process::id()).unwrap().rss_kib > 0);
    }

    #[test]
    fn reads_cpu_ticks_past_odd_command_names() {
        let stat = "42 (a b) c) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert!(cpu_time(std::process::id()).is_ok());
    }

    #[test]
    fn counts_only_established_connections_to_the_port_from_the_given_sockets() {
        let table = "  sl  local_address rem_address   st tx rx tr uid to inode\n\
            0: 0100007F:D431 0100007F:EF6D 01 0 0 0 0 0 1001\n\
            1: 0100007F:EF6D 0100007F:D431 01 0 0 0 0 0 1002\n\
            2: 0100007F:D432 0100007F:EF6D 06 0 0 0 0 0 1003\n\
            3: 0100007F:D433 0100007F:EF6D 01 0 0 0 0 0 1004\n\
            4: 00000000:EF6D 00000000:0000 0A 0 0 0 0 0 1005\n\
            5: 0100007F:D431 0100007F:EF6D 01 0 0 0 0 0 1001\n";
        let mine: HashSet<u64> = [1001, 1002, 1003, 1005].into();
        // Row 5 repeats row 0, as a table read while it changes can.
        assert_eq!(count_established_to(&[table.into()], 61293, &mine), 1);
    }

    #[test]
    fn finds_a_process_by_name_and_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listening_inodes(port).len(), 1);
        assert!(find_by_name("no-such-process-x", Some(port)).is_err());
        assert_eq!(listener_of(port).unwrap(), std::process::id());
    }

    #[test]
    fn counts_this_process_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(established_to_port(port, &[std::process::id()]), 2);
        assert_eq!(established_to_port(port, &[]), 0);
    }
}
