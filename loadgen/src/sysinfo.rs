//! What loadgen reads from the operating system: CPU time and RSS of a process from `/proc`,
//! the open-file limit, the ephemeral port range.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat`, in clock ticks of `USER_HZ`, which Linux
//! fixes at 100 per second for userspace on every mainstream architecture: a 10 ms resolution,
//! ample over trials of seconds. It includes every thread, live or exited.

use std::fs;
use std::io;

/// Clock ticks per second in `/proc/PID/stat` (Linux's `USER_HZ`).
pub const USER_HZ: u64 = 100;

/// File descriptors kept back from the open-file limit for the poller, wakers, stdio, the JSON
/// and SVG files and anything the runtime opens.
pub const RESERVED_FDS: u64 = 64;

/// One reading of a process's resource use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// User plus system CPU time, in microseconds.
    pub cpu_us: u64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
}

/// Reads CPU time and RSS of `pid`, or of loadgen itself when `None`.
pub fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    let stat = fs::read_to_string(format!("{dir}/stat"))?;
    let status = fs::read_to_string(format!("{dir}/status"))?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{dir}: no {what}"));
    let ticks = cpu_ticks(&stat).ok_or_else(|| bad("utime/stime in stat"))?;
    let rss_kib = vm_rss_kib(&status).ok_or_else(|| bad("VmRSS in status"))?;
    Ok(ProcSample {
        cpu_us: ticks * (1_000_000 / USER_HZ),
        rss_kib,
    })
}

/// `utime + stime` (fields 14 and 15) from a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from `/proc/PID/status`.
fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Makes sure `conns` sockets fit under the open-file limit, raising the soft limit toward the
/// hard one when needed. Returns the limit in force, or a message that says what to change.
pub fn ensure_fd_limit(conns: u64) -> Result<u64, String> {
    use rlimit::Resource;
    let needed = conns + RESERVED_FDS;
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    if needed <= soft {
        return Ok(soft);
    }
    if needed > hard {
        return Err(format!(
            "{conns} connections need about {needed} file descriptors (one per connection plus \
             {RESERVED_FDS} in reserve) but the open-file limit is {hard} (hard limit; soft \
             {soft}). Use fewer connections (at most {}) or raise the limit (`ulimit -n`).",
            hard.saturating_sub(RESERVED_FDS)
        ));
    }
    Resource::NOFILE
        .set(needed.max(soft), hard)
        .map_err(|e| format!("cannot raise the open-file limit to {needed}: {e}"))?;
    Ok(needed.max(soft))
}

/// How many ephemeral ports one source address offers (from `ip_local_port_range`).
pub fn ephemeral_ports() -> Option<u64> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_ascii_whitespace().map(|s| s.parse::<u64>());
    let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
    Some(hi.saturating_sub(lo) + 1)
}

/// CPU use between two samples as a percentage of one core.
pub fn cpu_percent(before: ProcSample, after: ProcSample, wall_us: u64) -> f64 {
    if wall_us == 0 {
        return 0.0;
    }
    after.cpu_us.saturating_sub(before.cpu_us) as f64 * 100.0 / wall_us as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(line), Some(267));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_is_read_from_status() {
        let status = "Name:\tfanout\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(vm_rss_kib(status), Some(5120));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn own_process_can_be_sampled_and_cpu_time_grows() {
        let a = sample(None).unwrap();
        assert!(a.rss_kib > 0);
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 60 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let b = sample(None).unwrap();
        assert!(
            b.cpu_us > a.cpu_us,
            "60 ms of spinning must show as CPU time"
        );
        assert!(cpu_percent(a, b, 60_000) > 0.0);
    }

    #[test]
    fn too_many_connections_are_refused_with_a_clear_message() {
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        if hard < u64::MAX / 2 {
            let e = ensure_fd_limit(hard).unwrap_err();
            assert!(e.contains("open-file limit"), "{e}");
        }
        assert!(ensure_fd_limit(10).is_ok());
    }
}
