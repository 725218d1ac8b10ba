//! The standard `process_*` metrics, read from `/proc/self` (Linux; absent
//! elsewhere): CPU time, resident and virtual memory, open and maximum file
//! descriptors, threads, start time.

use super::Exposition;

/// Clock ticks per second of `/proc/self/stat` times (`_SC_CLK_TCK`; 100 on
/// every Linux architecture this runs on).
const CLOCK_TICKS: f64 = 100.0;
const PAGE_SIZE: f64 = 4096.0;

/// What `/proc/self` says.
#[derive(Debug, Default, PartialEq)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    /// Seconds after boot.
    start_ticks: f64,
}

/// Fields of `/proc/self/stat` (proc(5)): after the command name in
/// parentheses (which may hold spaces), field 14 utime, 15 stime, 20
/// num_threads, 22 starttime, 23 vsize, 24 rss (pages).
fn parse_stat(stat: &str) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
    Some(Process {
        cpu_seconds: (field(14)? + field(15)?) / CLOCK_TICKS,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * PAGE_SIZE,
    })
}

/// `Max open files` soft limit from `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Seconds since the epoch at boot, from `/proc/stat`'s `btime`.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

pub(super) fn render(out: &mut Exposition) {
    let Some(p) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
    else {
        return;
    };
    out.family(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, in seconds.",
    );
    out.sample("process_cpu_seconds_total", &[], p.cpu_seconds);
    out.family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    out.sample("process_resident_memory_bytes", &[], p.resident_bytes);
    out.family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    );
    out.sample("process_virtual_memory_bytes", &[], p.virtual_bytes);
    out.family("process_threads", "gauge", "OS threads.");
    out.sample("process_threads", &[], p.threads);
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.family(
            "process_open_fds",
            "gauge",
            "Open file descriptors (sockets included).",
        );
        out.sample("process_open_fds", &[], dir.count() as f64);
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_fds(&l))
    {
        out.family("process_max_fds", "gauge", "Maximum open file descriptors.");
        out.sample("process_max_fds", &[], max);
    }
    if let Some(boot) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s))
    {
        out.family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
        );
        out.sample(
            "process_start_time_seconds",
            &[],
            boot + p.start_ticks / CLOCK_TICKS,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat_with_spaces_in_the_name() {
        let stat = "4242 (media relay) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let p = parse_stat(stat).unwrap();
        assert_eq!(
            p,
            Process {
                cpu_seconds: 3.0,
                resident_bytes: 2560.0 * 4096.0,
                virtual_bytes: 104_857_600.0,
                threads: 7.0,
                start_ticks: 123_456.0,
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024.0));
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
    }

    #[test]
    fn this_process_is_readable() {
        let mut e = Exposition::default();
        render(&mut e);
        let text = e.finish();
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_open_fds "), "{text}");
    }
}
