//! Base images for disk benchmarks and tests: a sparse raw file holding a
//! region of the guest disk tools' seeded block data, so a guest can
//! verify the base's content after a migration (`disk verify` with the
//! same seed and offset).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use edgemig_guest::disk::fill_chunk;

/// Bytes in a MiB.
const MIB: u64 = 1 << 20;

/// What a base image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseImageSpec {
    /// Size of the disk, MiB.
    pub virtual_mib: u32,
    /// Start of the data region, MiB.
    pub offset_mib: u32,
    /// Length of the data region, MiB (the rest is a hole, reading zeros).
    pub data_mib: u32,
    /// Seed of the data (as for `disk write --seed`).
    pub seed: u64,
}

/// Writes `spec` as a sparse raw image at `path`.
pub fn write_base_image(path: &Path, spec: &BaseImageSpec) -> std::io::Result<()> {
    if spec.offset_mib.saturating_add(spec.data_mib) > spec.virtual_mib {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the data region ends past the disk's end",
        ));
    }
    let mut file = std::fs::File::create(path)?;
    file.set_len(u64::from(spec.virtual_mib) * MIB)?;
    let start = u64::from(spec.offset_mib) * MIB;
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..u64::from(spec.data_mib) {
        fill_chunk(spec.seed, start + i * MIB, &mut buf);
        file.write_all(&buf)?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn holds_the_region_and_holes_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.raw");
        let spec = BaseImageSpec {
            virtual_mib: 8,
            offset_mib: 4,
            data_mib: 2,
            seed: 3,
        };
        write_base_image(&path, &spec).unwrap();
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes.len() as u64, 8 * MIB);
        assert!(bytes[..(4 * MIB) as usize].iter().all(|b| *b == 0));
        let mut expected = vec![0u8; MIB as usize];
        fill_chunk(3, 5 * MIB, &mut expected);
        assert_eq!(
            &bytes[(5 * MIB) as usize..(6 * MIB) as usize],
            &expected[..]
        );
        let bad = BaseImageSpec {
            offset_mib: 7,
            ..spec
        };
        assert!(write_base_image(&path, &bad).is_err());
    }
}
