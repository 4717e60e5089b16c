//! The embedded directory: JSON files under one directory shared by every
//! agent process of one machine (the testbed).
//!
//! Layout under the root: `sites/<name>.json`, `vms/<vm>.json`,
//! `leases/<vm>.json` and the lock file `lock`. Every record is replaced
//! atomically (temp file + rename). Lease and location changes happen under
//! an exclusive `flock` on `lock`, so acquiring, renewing, releasing and the
//! guarded operations are serialised between processes. A lease expires at
//! the wall-clock time `expires_unix_ms` stored in its file.
//!
//! Limits: one machine only (`flock` and the shared wall clock are local;
//! do not put the root on NFS), no watch or notification, and sites never
//! expire by themselves. A crash in the middle of a write may leave a
//! `.<name>.tmp.*` file behind; it is ignored. Blocking file work runs on
//! tokio's blocking pool.

mod files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::DirectoryError;
use crate::model::{Fence, Lease, SiteEntry, check_name, check_ttl, now_ms};
use files::{FileLock, create_dir, list_json, read_json, remove, unique_token, write_json};

/// Where a VM runs (`vms/<vm>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmRecord {
    vm: String,
    site: String,
    updated_ms: u64,
}

/// Who holds a VM's lease and until when (`leases/<vm>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRecord {
    vm: String,
    holder: String,
    token: String,
    expires_unix_ms: u64,
}

impl LeaseRecord {
    fn is_live(&self, now: u64) -> bool {
        now < self.expires_unix_ms
    }
}

/// The paths of one embedded directory.
#[derive(Debug)]
struct Paths {
    root: PathBuf,
    sites: PathBuf,
    vms: PathBuf,
    leases: PathBuf,
    lock: PathBuf,
}

impl Paths {
    fn site(&self, name: &str) -> PathBuf {
        self.sites.join(format!("{name}.json"))
    }

    fn vm(&self, vm: &str) -> PathBuf {
        self.vms.join(format!("{vm}.json"))
    }

    fn lease(&self, vm: &str) -> PathBuf {
        self.leases.join(format!("{vm}.json"))
    }

    /// Reads the lease file and checks it is `lease`'s and unexpired.
    /// Call with the lock held.
    fn check(&self, lease: &Lease) -> Result<(), DirectoryError> {
        let Fence::Embedded { token } = &lease.fence else {
            return Err(lease.foreign());
        };
        match read_json::<LeaseRecord>(&self.lease(&lease.vm))? {
            Some(rec) if rec.token == *token && rec.is_live(now_ms()) => Ok(()),
            _ => Err(lease.lost()),
        }
    }
}

/// A handle on a directory of JSON files shared by the agents of one
/// machine. Cheap to clone; several handles (and processes) may use the
/// same root at once.
#[derive(Debug, Clone)]
pub struct EmbeddedDirectory {
    paths: Arc<Paths>,
}

/// Lease durations are stored in ms.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl EmbeddedDirectory {
    /// Opens (creating when missing) the directory rooted at `root`.
    ///
    /// # Errors
    /// [`DirectoryError::Io`] when the subdirectories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DirectoryError> {
        let root = root.into();
        let paths = Paths {
            sites: root.join("sites"),
            vms: root.join("vms"),
            leases: root.join("leases"),
            lock: root.join("lock"),
            root,
        };
        for dir in [&paths.sites, &paths.vms, &paths.leases] {
            create_dir(dir)?;
        }
        Ok(Self {
            paths: Arc::new(paths),
        })
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// Runs blocking file work on tokio's blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, DirectoryError>
    where
        T: Send + 'static,
        F: FnOnce(&Paths) -> Result<T, DirectoryError> + Send + 'static,
    {
        let paths = Arc::clone(&self.paths);
        tokio::task::spawn_blocking(move || f(&paths))
            .await
            .map_err(DirectoryError::Task)?
    }

    /// Like [`Self::run`], holding the directory lock.
    async fn locked<T, F>(&self, f: F) -> Result<T, DirectoryError>
    where
        T: Send + 'static,
        F: FnOnce(&Paths) -> Result<T, DirectoryError> + Send + 'static,
    {
        self.run(move |p| {
            let _lock = FileLock::acquire(&p.lock)?;
            f(p)
        })
        .await
    }

    /// Checks the root is still usable (its lock can be taken).
    ///
    /// # Errors
    /// [`DirectoryError::Io`].
    pub async fn health(&self) -> Result<(), DirectoryError> {
        self.locked(|_| Ok(())).await
    }

    /// Registers or refreshes a site; returns the stored entry.
    ///
    /// # Errors
    /// Invalid name, or a file error.
    pub async fn register_site(
        &self,
        name: &str,
        peer_addr: &str,
        api_socket: Option<&Path>,
    ) -> Result<SiteEntry, DirectoryError> {
        check_name("site", name)?;
        let entry = SiteEntry {
            name: name.to_owned(),
            peer_addr: peer_addr.to_owned(),
            api_socket: api_socket.map(Path::to_path_buf),
            updated_ms: now_ms(),
        };
        let stored = entry.clone();
        self.run(move |p| write_json(&p.site(&stored.name), &stored))
            .await?;
        Ok(entry)
    }

    /// One site, if registered.
    ///
    /// # Errors
    /// Invalid name, or a file error.
    pub async fn site(&self, name: &str) -> Result<Option<SiteEntry>, DirectoryError> {
        check_name("site", name)?;
        let name = name.to_owned();
        self.run(move |p| read_json(&p.site(&name))).await
    }

    /// Every registered site, sorted by name.
    ///
    /// # Errors
    /// A file error or a corrupt record.
    pub async fn sites(&self) -> Result<Vec<SiteEntry>, DirectoryError> {
        self.run(|p| {
            let mut sites = Vec::new();
            for path in list_json(&p.sites)? {
                if let Some(site) = read_json::<SiteEntry>(&path)? {
                    sites.push(site);
                }
            }
            sites.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(sites)
        })
        .await
    }

    /// Removes a site (nothing if it was not registered).
    ///
    /// # Errors
    /// Invalid name, or a file error.
    pub async fn remove_site(&self, name: &str) -> Result<(), DirectoryError> {
        check_name("site", name)?;
        let name = name.to_owned();
        self.run(move |p| remove(&p.site(&name))).await
    }

    /// Records where a VM runs, without any lease (initial placement or
    /// an operator's correction; controllers use `guarded_set_location`).
    ///
    /// # Errors
    /// Invalid names, or a file error.
    pub async fn set_location(&self, vm: &str, site: &str) -> Result<(), DirectoryError> {
        check_name("VM", vm)?;
        check_name("site", site)?;
        let rec = VmRecord {
            vm: vm.to_owned(),
            site: site.to_owned(),
            updated_ms: now_ms(),
        };
        self.locked(move |p| write_json(&p.vm(&rec.vm), &rec)).await
    }

    /// The site a VM runs on, if recorded.
    ///
    /// # Errors
    /// Invalid name, or a file error.
    pub async fn location(&self, vm: &str) -> Result<Option<String>, DirectoryError> {
        check_name("VM", vm)?;
        let vm = vm.to_owned();
        self.run(move |p| Ok(read_json::<VmRecord>(&p.vm(&vm))?.map(|r| r.site)))
            .await
    }

    /// Every recorded VM location (VM name to site name).
    ///
    /// # Errors
    /// A file error or a corrupt record.
    pub async fn locations(&self) -> Result<BTreeMap<String, String>, DirectoryError> {
        self.run(|p| {
            let mut map = BTreeMap::new();
            for path in list_json(&p.vms)? {
                if let Some(rec) = read_json::<VmRecord>(&path)? {
                    map.insert(rec.vm, rec.site);
                }
            }
            Ok(map)
        })
        .await
    }

    /// Takes the lease on `vm` for `ttl` if nobody holds an unexpired one.
    /// `None` when someone (including `holder` itself) already does.
    ///
    /// # Errors
    /// Invalid names or TTL, or a file error.
    pub async fn acquire(
        &self,
        vm: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, DirectoryError> {
        check_name("VM", vm)?;
        check_name("holder", holder)?;
        check_ttl(ttl)?;
        let (vm, holder) = (vm.to_owned(), holder.to_owned());
        self.locked(move |p| {
            let path = p.lease(&vm);
            let now = now_ms();
            if let Some(rec) = read_json::<LeaseRecord>(&path)?
                && rec.is_live(now)
            {
                return Ok(None);
            }
            let rec = LeaseRecord {
                vm: vm.clone(),
                holder: holder.clone(),
                token: unique_token(),
                expires_unix_ms: now.saturating_add(ttl_ms(ttl)),
            };
            write_json(&path, &rec)?;
            Ok(Some(Lease {
                vm,
                holder,
                ttl,
                fence: Fence::Embedded { token: rec.token },
            }))
        })
        .await
    }

    /// Extends the lease by its TTL from now. `false` when it was already
    /// lost (expired, released or taken over): an expired lease is never
    /// revived, even if nobody took it.
    ///
    /// # Errors
    /// A file error, or a lease from another backend.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, DirectoryError> {
        let Fence::Embedded { token } = &lease.fence else {
            return Err(lease.foreign());
        };
        let rec = LeaseRecord {
            vm: lease.vm.clone(),
            holder: lease.holder.clone(),
            token: token.clone(),
            expires_unix_ms: 0,
        };
        let (lease, ttl) = (lease.clone(), ttl_ms(lease.ttl));
        self.locked(move |p| match p.check(&lease) {
            Ok(()) => {
                let rec = LeaseRecord {
                    expires_unix_ms: now_ms().saturating_add(ttl),
                    ..rec
                };
                write_json(&p.lease(&lease.vm), &rec)?;
                Ok(true)
            }
            Err(DirectoryError::LeaseLost { .. }) => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    /// Gives the lease up (nothing if it was already lost).
    ///
    /// # Errors
    /// A file error, or a lease from another backend.
    pub async fn release(&self, lease: Lease) -> Result<(), DirectoryError> {
        self.locked(move |p| match p.check(&lease) {
            Ok(()) => remove(&p.lease(&lease.vm)),
            Err(DirectoryError::LeaseLost { .. }) => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }

    /// Fencing check: `Ok` only while `lease` is held and unexpired.
    ///
    /// # Errors
    /// [`DirectoryError::LeaseLost`] when it is not, or a file error.
    pub async fn check_lease(&self, lease: &Lease) -> Result<(), DirectoryError> {
        let lease = lease.clone();
        self.locked(move |p| p.check(&lease)).await
    }

    /// Records where the lease's VM runs, only if the lease is still held
    /// (checked and written under the directory lock).
    ///
    /// # Errors
    /// [`DirectoryError::LeaseLost`] (nothing written), invalid site name,
    /// or a file error.
    pub async fn guarded_set_location(
        &self,
        lease: &Lease,
        site: &str,
    ) -> Result<(), DirectoryError> {
        check_name("site", site)?;
        let lease = lease.clone();
        let site = site.to_owned();
        self.locked(move |p| {
            p.check(&lease)?;
            let rec = VmRecord {
                vm: lease.vm.clone(),
                site,
                updated_ms: now_ms(),
            };
            write_json(&p.vm(&lease.vm), &rec)
        })
        .await
    }

    /// The current holder of a VM's lease, if an unexpired one exists.
    ///
    /// # Errors
    /// Invalid name, or a file error.
    pub async fn lease_holder(&self, vm: &str) -> Result<Option<String>, DirectoryError> {
        check_name("VM", vm)?;
        let vm = vm.to_owned();
        self.run(move |p| {
            Ok(read_json::<LeaseRecord>(&p.lease(&vm))?
                .filter(|r| r.is_live(now_ms()))
                .map(|r| r.holder))
        })
        .await
    }
}
