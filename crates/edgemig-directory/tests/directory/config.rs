//! `DirectoryConfig` parsing and `connect`.

use edgemig_directory::{Directory, DirectoryConfig};

#[derive(Debug, serde::Deserialize)]
struct File {
    directory: DirectoryConfig,
}

fn parse(text: &str) -> Result<DirectoryConfig, toml::de::Error> {
    toml::from_str::<File>(text).map(|f| f.directory)
}

#[test]
fn parses_both_backends() {
    let e = parse("[directory]\nbackend = \"embedded\"\npath = \"/run/dir\"\n").unwrap();
    assert_eq!(
        e,
        DirectoryConfig::Embedded {
            path: "/run/dir".into()
        }
    );
    let x = parse(
        "[directory]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\"]\nprefix = \"/edgemig\"\n",
    )
    .unwrap();
    assert_eq!(
        x,
        DirectoryConfig::Etcd {
            endpoints: vec!["http://10.0.0.1:2379".into()],
            prefix: "/edgemig".into()
        }
    );
}

#[test]
fn rejects_unknown_fields_and_backends() {
    let err =
        parse("[directory]\nbackend = \"embedded\"\npath = \"/x\"\nprefix = \"/p\"\n").unwrap_err();
    assert!(err.to_string().contains("prefix"), "{err}");
    assert!(parse("[directory]\nbackend = \"zookeeper\"\npath = \"/x\"\n").is_err());
    assert!(parse("[directory]\nbackend = \"etcd\"\nendpoints = []\n").is_err());
}

#[tokio::test]
async fn connect_embedded_creates_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a").join("b");
    let cfg = DirectoryConfig::Embedded { path: root.clone() };
    let dir = cfg.connect().await.unwrap();
    assert!(matches!(dir, Directory::Embedded(_)));
    dir.register_site("s1", "127.0.0.1:1", None).await.unwrap();
    assert!(root.join("sites").join("s1.json").is_file());
}

#[tokio::test]
async fn connect_etcd_is_lazy() {
    // Nothing listens on port 9 of loopback (discard, not served here).
    let cfg = DirectoryConfig::Etcd {
        endpoints: vec!["http://127.0.0.1:9".into()],
        prefix: "/edgemig".into(),
    };
    let dir = cfg.connect().await.unwrap();
    assert!(matches!(dir, Directory::Etcd(_)));
    let err = dir.health().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}
