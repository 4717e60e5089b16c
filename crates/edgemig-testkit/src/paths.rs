//! Where the build put things the tests need.

use std::path::PathBuf;

/// The workspace's cargo target directory.
pub fn workspace_target() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// The guest image built by `scripts/test.sh` (`edgemig image build`), or
/// `$EDGEMIG_IMAGE_DIR`. Panics with instructions when it is missing.
pub fn guest_image_dir() -> PathBuf {
    let dir = std::env::var_os("EDGEMIG_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_target().join("guest-image"));
    assert!(
        dir.join("initramfs.cpio").is_file() && dir.join("vmlinuz").is_file(),
        "guest image missing in {}: run scripts/test.sh (or `edgemig image build`) first",
        dir.display()
    );
    dir
}
