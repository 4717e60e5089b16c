//! Memory ballast for benchmarks: guest memory filled with mixed data (half
//! random bytes, which do not compress, half English-like text, which
//! does), held until replaced.

use std::sync::Mutex;

use edgemig_guest_proto::FillReport;

/// Errors of a fill.
#[derive(Debug, thiserror::Error)]
pub enum BallastError {
    /// More than the guest can give.
    #[error("Cannot hold {0} MiB: not enough memory")]
    TooLarge(u32),
}

const WORDS: &[&str] = &[
    "the",
    "edge",
    "site",
    "virtual",
    "machine",
    "moves",
    "between",
    "paths",
    "client",
    "address",
    "memory",
    "disk",
    "network",
    "fast",
    "transparent",
    "migration",
    "of",
    "and",
    "to",
    "a",
];

/// The ballast.
#[derive(Debug, Default)]
pub struct Ballast {
    held: Mutex<Vec<u8>>,
}

impl Ballast {
    /// Replaces the ballast with `mib` MiB of mixed data.
    pub fn fill(&self, mib: u32) -> Result<FillReport, BallastError> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *held = Vec::new();
        // Leave room for the rest of the guest: an OOM kill of the agent
        // would lose the request.
        let wanted = u64::from(mib) << 20;
        if crate::memwriter::mem_available().is_some_and(|avail| wanted + (16 << 20) > avail) {
            return Err(BallastError::TooLarge(mib));
        }
        let bytes = usize::try_from(mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20);
        let mut buf = Vec::new();
        buf.try_reserve_exact(bytes)
            .map_err(|_| BallastError::TooLarge(mib))?;
        let random = bytes / 2;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while buf.len() + 8 <= random {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        let mut i = 0usize;
        while buf.len() < bytes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let word = WORDS[(x % WORDS.len() as u64) as usize];
            let take = word.len().min(bytes - buf.len());
            buf.extend_from_slice(&word.as_bytes()[..take]);
            if buf.len() < bytes {
                buf.push(if i % 12 == 11 { b'\n' } else { b' ' });
            }
            i += 1;
        }
        *held = buf;
        Ok(FillReport {
            random_mib: mib / 2,
            text_mib: mib - mib / 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_the_requested_size_with_half_text() {
        let b = Ballast::default();
        let r = b.fill(2).unwrap();
        assert_eq!(r.random_mib + r.text_mib, 2);
        let held = b.held.lock().unwrap();
        assert_eq!(held.len(), 2 << 20);
        let text = &held[1 << 20..];
        assert!(
            text.iter()
                .all(|c| c.is_ascii_lowercase() || *c == b' ' || *c == b'\n')
        );
        drop(held);
        b.fill(1).unwrap();
        assert_eq!(b.held.lock().unwrap().len(), 1 << 20);
    }
}
