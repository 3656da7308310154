//! What a benchmark phase cost this process, in figures that do not depend on how busy the host
//! is (wall-clock throughput on a shared machine varies 2× from hour to hour; these do not):
//! CPU time (user + system, from `getrusage`), write transactions and commits (counted in
//! `atelier_actors::db`), and bytes this process sent to storage (`/proc/self/io`).
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

use atelier_actors::db;

#[derive(Clone, Copy, Debug)]
pub struct Usage {
    cpu: Duration,
    writes_begun: u64,
    commits: u64,
    /// `write_bytes` of /proc/self/io; None where there is no /proc (not Linux).
    write_bytes: Option<u64>,
    /// The database's size on PostgreSQL (its server's writes are not this process's).
    database_bytes: Option<u64>,
}

impl Usage {
    pub async fn now(database: &DatabaseConnection) -> anyhow::Result<Usage> {
        let (writes_begun, commits) = db::write_counts();
        let database_bytes = if db::is_postgres(database) {
            let size = database
                .query_one_raw(Statement::from_string(
                    database.get_database_backend(),
                    "SELECT pg_database_size(current_database()) AS size",
                ))
                .await?
                .map(|row| row.try_get::<i64>("", "size"))
                .transpose()?;
            size.map(|size| size.max(0) as u64)
        } else {
            None
        };
        Ok(Usage {
            cpu: cpu_time(),
            writes_begun,
            commits,
            write_bytes: write_bytes(),
            database_bytes,
        })
    }

    /// The figures for `generations` generations run between `earlier` and `self`, as JSON
    /// fields, and a line for people.
    pub fn per_generation(&self, earlier: &Usage, generations: usize) -> (Value, String) {
        let count = generations.max(1) as f64;
        let cpu_per_1000 = (self.cpu - earlier.cpu).as_secs_f64() * 1000.0 / count;
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / count;
        let transactions = per(self.writes_begun, earlier.writes_begun);
        let commits = per(self.commits, earlier.commits);
        let both = |now: Option<u64>, then: Option<u64>| Some(per(now?, then?).round());
        let written = both(self.write_bytes, earlier.write_bytes);
        let grown = both(self.database_bytes, earlier.database_bytes);
        let mut line = format!(
            "CPU {cpu_per_1000:.2} s per 1,000 generations; per generation: {transactions:.3} write transactions, {commits:.3} commits"
        );
        if let Some(written) = written {
            line.push_str(&format!(", {written:.0} bytes written"));
        }
        if let Some(grown) = grown {
            line.push_str(&format!(", database grew {grown:.0} bytes"));
        }
        let fields = json!({
            "cpu_secs_per_1000_generations": (cpu_per_1000 * 100.0).round() / 100.0,
            "write_transactions_per_generation": (transactions * 1000.0).round() / 1000.0,
            "commits_per_generation": (commits * 1000.0).round() / 1000.0,
            "bytes_written_per_generation": written,
            "database_growth_bytes_per_generation": grown,
        });
        (fields, line)
    }
}

/// User + system CPU time of this process (all its threads).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |value: libc::timeval| {
        Duration::from_secs(value.tv_sec.max(0) as u64)
            + Duration::from_micros(value.tv_usec.max(0) as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Bytes this process caused to be sent to storage so far, from /proc (Linux).
fn write_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
}
