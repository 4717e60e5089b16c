//! The agent's metrics in the Prometheus text format (`GET /metrics` on the
//! local API): VMs by state and migration counters and durations.

use std::fmt::Write;

use edgemig_migration::{MigrationReport, ReportStatus};

/// Counters over every migration this agent finished as a source.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MigrationTotals {
    /// Completed migrations.
    pub completed: u64,
    /// Failed migrations.
    pub failed: u64,
    /// Cancelled migrations.
    pub cancelled: u64,
    /// Sum of completed migrations' total time, seconds.
    pub duration_s: f64,
    /// Sum of completed migrations' downtime, seconds.
    pub downtime_s: f64,
    /// Memory bytes sent.
    pub memory_bytes: u64,
    /// Disk bytes sent.
    pub disk_bytes: u64,
}

impl MigrationTotals {
    /// Adds one finished migration.
    pub fn add(&mut self, r: &MigrationReport) {
        match r.status {
            ReportStatus::Completed => {
                self.completed += 1;
                self.duration_s += r.total_ms as f64 / 1000.0;
                self.downtime_s += r.downtime_ms.unwrap_or(0) as f64 / 1000.0;
            }
            ReportStatus::Failed => self.failed += 1,
            ReportStatus::Cancelled => self.cancelled += 1,
        }
        self.memory_bytes += r.memory_bytes;
        self.disk_bytes += r.disk_bytes;
    }
}

/// Renders the metrics.
pub fn render(
    site: &str,
    vms: &[(&str, usize)],
    running_migrations: usize,
    t: &MigrationTotals,
) -> String {
    let mut out = String::new();
    let site = site.replace(['\\', '"'], "_");
    let _ = writeln!(
        out,
        "# HELP edgemig_vms VMs at this site by state.\n# TYPE edgemig_vms gauge"
    );
    for (state, n) in vms {
        let _ = writeln!(out, "edgemig_vms{{site=\"{site}\",state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP edgemig_migrations_running Migrations running from this site.\n# TYPE edgemig_migrations_running gauge\nedgemig_migrations_running{{site=\"{site}\"}} {running_migrations}"
    );
    let _ = writeln!(
        out,
        "# HELP edgemig_migrations_total Finished migrations from this site by status.\n# TYPE edgemig_migrations_total counter"
    );
    for (status, n) in [
        ("completed", t.completed),
        ("failed", t.failed),
        ("cancelled", t.cancelled),
    ] {
        let _ = writeln!(
            out,
            "edgemig_migrations_total{{site=\"{site}\",status=\"{status}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP edgemig_migration_duration_seconds Total time of completed migrations.\n# TYPE edgemig_migration_duration_seconds summary\nedgemig_migration_duration_seconds_sum{{site=\"{site}\"}} {}\nedgemig_migration_duration_seconds_count{{site=\"{site}\"}} {}",
        t.duration_s, t.completed
    );
    let _ = writeln!(
        out,
        "# HELP edgemig_migration_downtime_seconds Downtime of completed migrations.\n# TYPE edgemig_migration_downtime_seconds summary\nedgemig_migration_downtime_seconds_sum{{site=\"{site}\"}} {}\nedgemig_migration_downtime_seconds_count{{site=\"{site}\"}} {}",
        t.downtime_s, t.completed
    );
    let _ = writeln!(
        out,
        "# HELP edgemig_migration_bytes_total Bytes sent by migrations.\n# TYPE edgemig_migration_bytes_total counter"
    );
    let _ = writeln!(
        out,
        "edgemig_migration_bytes_total{{site=\"{site}\",kind=\"memory\"}} {}",
        t.memory_bytes
    );
    let _ = writeln!(
        out,
        "edgemig_migration_bytes_total{{site=\"{site}\",kind=\"disk\"}} {}",
        t.disk_bytes
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_sums() {
        let t = MigrationTotals {
            completed: 2,
            failed: 1,
            duration_s: 12.5,
            ..Default::default()
        };
        let text = render("site-a", &[("running", 3)], 1, &t);
        assert!(text.contains("edgemig_vms{site=\"site-a\",state=\"running\"} 3"));
        assert!(text.contains("edgemig_migrations_total{site=\"site-a\",status=\"failed\"} 1"));
        assert!(text.contains("edgemig_migration_duration_seconds_sum{site=\"site-a\"} 12.5"));
        assert!(text.contains("edgemig_migration_duration_seconds_count{site=\"site-a\"} 2"));
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("edgemig_")),
            "{text}"
        );
    }
}
