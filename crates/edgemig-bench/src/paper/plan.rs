//! The sizes of a run: the full reproduction of the paper's evaluation or
//! the `--quick` subset (the same measurements with one point per figure
//! and smaller guests).

use crate::migrate::DiskSetup;

/// What each figure measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Rates (Mbit/s) every path is set to, one testbed per rate.
    pub bandwidth_mbit: Vec<u64>,
    /// Guest RAM of the bandwidth sweep, MiB.
    pub bandwidth_memory_mib: u64,
    /// Mixed data the bandwidth sweep's guest holds, MiB.
    pub bandwidth_fill_mib: u32,
    /// Guest sizes of the memory sweep, MiB.
    pub memory_mib: Vec<u64>,
    /// Rate of every path in the memory sweep and the disk comparison.
    pub memory_rate_mbit: u64,
    /// The memory sweep's guest holds `memory / fill_divisor` MiB of mixed data.
    pub fill_divisor: u64,
    /// Its memory writer's working set is `memory / writer_divisor` MiB.
    pub writer_divisor: u64,
    /// The writer's dirty rate, MiB/s.
    pub writer_rate_mib_s: u32,
    /// Seconds per client throughput measurement in the handoff figure.
    pub handoff_seconds: f64,
    /// Guest RAM of the disk comparison, MiB.
    pub disk_memory_mib: u64,
    /// Mixed data its guest holds, MiB.
    pub disk_fill_mib: u32,
    /// Its data disk (`base_at_destination` is set per bar).
    pub disk: DiskSetup,
}

impl Plan {
    /// The paper's evaluation: about 30–40 min on a 2-core TCG machine.
    pub fn full() -> Self {
        Self {
            bandwidth_mbit: vec![10, 25, 50, 100],
            bandwidth_memory_mib: 256,
            bandwidth_fill_mib: 128,
            memory_mib: vec![256, 512, 1024, 2048],
            memory_rate_mbit: 50,
            fill_divisor: 4,
            writer_divisor: 8,
            writer_rate_mib_s: 4,
            handoff_seconds: 5.0,
            disk_memory_mib: 256,
            disk_fill_mib: 64,
            disk: DiskSetup {
                disk_mib: 1024,
                written_mib: 256,
                base_mib: 256,
                base_at_destination: true,
            },
        }
    }

    /// A few minutes: one point per figure, small guests, short
    /// measurements.
    pub fn quick() -> Self {
        Self {
            bandwidth_mbit: vec![100],
            bandwidth_memory_mib: 256,
            bandwidth_fill_mib: 32,
            memory_mib: vec![256],
            memory_rate_mbit: 100,
            fill_divisor: 8,
            writer_divisor: 8,
            writer_rate_mib_s: 4,
            handoff_seconds: 3.0,
            disk_memory_mib: 256,
            disk_fill_mib: 32,
            disk: DiskSetup {
                disk_mib: 256,
                written_mib: 32,
                base_mib: 32,
                base_at_destination: true,
            },
        }
    }

    /// Mixed data held by the memory sweep's guest of `memory_mib`.
    pub fn fill_of(&self, memory_mib: u64) -> u32 {
        u32::try_from(memory_mib / self.fill_divisor.max(1)).unwrap_or(u32::MAX)
    }

    /// Working set of the memory sweep's writer in a guest of `memory_mib`.
    pub fn writer_of(&self, memory_mib: u64) -> u32 {
        u32::try_from(memory_mib / self.writer_divisor.max(1)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::Plan;

    #[test]
    fn quick_is_a_subset_of_full() {
        let (q, f) = (Plan::quick(), Plan::full());
        assert!(
            q.bandwidth_mbit
                .iter()
                .all(|r| f.bandwidth_mbit.contains(r))
        );
        assert!(q.memory_mib.iter().all(|m| f.memory_mib.contains(m)));
        assert_eq!(f.fill_of(1024), 256);
        assert_eq!(f.writer_of(2048), 256);
        assert_eq!(q.fill_of(256), 32);
    }
}
