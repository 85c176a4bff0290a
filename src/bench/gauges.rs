//! What `bench monitors` reads from the system: anonymous memory, a thread's CPU time, and
//! the bytes a DuckDB file (with its WAL) takes on disk.

use std::path::Path;
use std::time::Duration;

/// Anonymous memory of this process now, in bytes: `Anonymous:` of /proc/self/smaps_rollup
/// (heap and stacks, resident or not counted twice), else `RssAnon:` of /proc/self/status.
pub fn anon_bytes() -> u64 {
    let kb = |text: &str, field: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|t| kb(&t, "Anonymous:"))
        .or_else(|| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|t| kb(&t, "RssAnon:"))
        })
        .unwrap_or(0)
        * 1024
}

/// Hands freed heap back to the system (glibc keeps it otherwise), so that a memory figure
/// taken afterwards counts what is held, not what was once used.
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// User + system CPU time of thread `tid` of this process so far (clock-tick resolution).
pub fn thread_cpu(tid: i32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return Duration::ZERO;
    };
    parse_stat_cpu(&stat, ticks_per_s())
}

fn ticks_per_s() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime (fields 14 and 15) of a /proc stat line; the command name in parentheses
/// may hold spaces, so fields are counted after its closing parenthesis.
fn parse_stat_cpu(stat: &str, ticks: u64) -> Duration {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return Duration::ZERO;
    };
    // After ')': state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let t = n(11) + n(12);
    Duration::from_nanos(t.saturating_mul(1_000_000_000 / ticks.max(1)))
}

/// Bytes of the DuckDB file at `path` plus its write-ahead log, if any.
pub fn db_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    size(path) + size(Path::new(&wal))
}

/// The raw results table of a closed history file: its rows, and the bytes of the storage
/// blocks its columns occupy (DuckDB blocks of 256 KiB; a block shared with another table
/// counts whole, so this is an upper bound that tightens as the table grows).
pub fn results_table(path: &Path) -> anyhow::Result<(u64, u64)> {
    let conn = crate::store::connect(path, true)?;
    let rows: i64 = conn.query_row("SELECT count(*) FROM monitor_results", [], |r| r.get(0))?;
    let blocks: i64 = conn.query_row(
        "SELECT count(DISTINCT block_id) FROM pragma_storage_info('monitor_results') \
         WHERE persistent AND block_id >= 0",
        [],
        |r| r.get(0),
    )?;
    let block_size: i64 = conn
        .query_row("SELECT block_size FROM pragma_database_size()", [], |r| {
            r.get(0)
        })
        .unwrap_or(262_144);
    Ok((
        rows.max(0) as u64,
        (blocks.max(0) * block_size.max(0)) as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_user_and_system_time() {
        let stat = "1234 (tokio (rt) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_stat_cpu(stat, 100), Duration::from_secs(3));
        assert_eq!(parse_stat_cpu("garbage", 100), Duration::ZERO);
    }

    #[test]
    fn memory_grows_with_what_is_held() {
        let before = anon_bytes();
        assert!(before > 0);
        let held: Vec<u8> = std::hint::black_box(vec![1; 128 << 20]);
        let after = anon_bytes();
        assert!(after >= before + (64 << 20), "{before} -> {after}");
        drop(std::hint::black_box(held));
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(60) {
            std::hint::black_box(0u64);
        }
        assert!(thread_cpu(me) > Duration::ZERO);
    }
}
