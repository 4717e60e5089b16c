//! The example site config that the edgemig .deb installs as
//! `/etc/edgemig/site.toml.example` (`packaging/host/site.toml.example`)
//! loads as it is, and still loads with every optional field uncommented.

use std::path::{Path, PathBuf};

use edgemig_agent::SiteConfig;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/host/site.toml.example")
}

fn load(path: &Path) -> SiteConfig {
    SiteConfig::load(path).unwrap_or_else(|e| {
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!("\n  caused by: {c}"));
            cause = c.source();
        }
        panic!("{}: {msg}", path.display())
    })
}

#[test]
fn packaged_example_loads_as_shipped() {
    let config = load(&example());
    assert_eq!(config.site, "site-a");
    assert_eq!(
        config.image_dir,
        Path::new("/usr/share/edgemig/guest-image")
    );
    assert_eq!(config.state_dir, Path::new("/var/lib/edgemig/site-a"));
    assert!(
        config.listen.is_none(),
        "listen needs [tls]: keep it commented"
    );
    assert!(config.peers.is_empty());
}

#[test]
fn packaged_example_loads_with_every_option_uncommented() {
    let text = std::fs::read_to_string(example()).expect("read the example");
    // `#key = value` and `#[section]` lines are options; `# text` is prose.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(uncommented, text, "the example has no commented options");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, &uncommented).expect("write");
    let config = load(&path);
    assert_eq!(config.peers.len(), 1);
    assert!(config.tls.is_some() && config.listen.is_some());
    assert!(config.directory.is_some());
    assert_eq!(config.handoff_grace_s, Some(60));
}
