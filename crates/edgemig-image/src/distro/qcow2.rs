//! The raw disk becomes a compressed qcow2 (zstd clusters; unwritten and
//! zero clusters take no space), with `qemu-img`.

use std::path::Path;

use super::cmd::Cmd;
use super::error::DistroError;

/// Converts `raw` into a compressed qcow2 file `out`.
pub(crate) fn convert(raw: &Path, out: &Path) -> Result<(), DistroError> {
    Cmd::new("qemu-img")
        .args(["convert", "-q", "-c", "-f", "raw", "-O", "qcow2"])
        .args(["-o", "compression_type=zstd"])
        .arg(raw)
        .arg(out)
        .run()
        .map(drop)
}

/// The virtual size of an image, as `qemu-img info` reports it.
pub fn virtual_size(image: &Path) -> Result<u64, DistroError> {
    let out = Cmd::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(image)
        .run()?;
    let bad =
        |why: &str| DistroError::Check(format!("qemu-img info of {}: {why}", image.display()));
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|_| bad("not JSON"))?;
    if v["format"] != "qcow2" {
        return Err(bad("not a qcow2 file"));
    }
    v["virtual-size"]
        .as_u64()
        .ok_or_else(|| bad("no virtual-size"))
}
