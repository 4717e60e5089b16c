//! [`Directory`]: one interface over the embedded and etcd backends.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::embedded::EmbeddedDirectory;
use crate::error::DirectoryError;
use crate::etcd::EtcdDirectory;
use crate::model::{Lease, SiteEntry};

/// The site directory an agent uses, whichever backend it runs on.
///
/// Every method forwards to the backend; see [`EmbeddedDirectory`] and
/// [`EtcdDirectory`] for the details of each.
#[derive(Debug, Clone)]
pub enum Directory {
    /// Files shared by the agents of one machine.
    Embedded(EmbeddedDirectory),
    /// An etcd cluster.
    Etcd(EtcdDirectory),
}

/// Forwards one call to whichever backend `self` is.
macro_rules! forward {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Directory::Embedded(d) => d.$method($($arg),*).await,
            Directory::Etcd(d) => d.$method($($arg),*).await,
        }
    };
}

impl Directory {
    /// Checks the directory can be used right now.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] (etcd) or [`DirectoryError::Io`] (embedded).
    pub async fn health(&self) -> Result<(), DirectoryError> {
        forward!(self.health())
    }

    /// Registers or refreshes a site (its `updated_ms` becomes now).
    ///
    /// # Errors
    /// Invalid name or backend failure.
    pub async fn register_site(
        &self,
        name: &str,
        peer_addr: &str,
        api_socket: Option<&Path>,
    ) -> Result<SiteEntry, DirectoryError> {
        forward!(self.register_site(name, peer_addr, api_socket))
    }

    /// One site, if registered.
    ///
    /// # Errors
    /// Invalid name or backend failure.
    pub async fn site(&self, name: &str) -> Result<Option<SiteEntry>, DirectoryError> {
        forward!(self.site(name))
    }

    /// Every registered site, sorted by name.
    ///
    /// # Errors
    /// Backend failure.
    pub async fn sites(&self) -> Result<Vec<SiteEntry>, DirectoryError> {
        forward!(self.sites())
    }

    /// Removes a site.
    ///
    /// # Errors
    /// Invalid name or backend failure.
    pub async fn remove_site(&self, name: &str) -> Result<(), DirectoryError> {
        forward!(self.remove_site(name))
    }

    /// Records where a VM runs, without a lease (initial placement).
    ///
    /// # Errors
    /// Invalid names or backend failure.
    pub async fn set_location(&self, vm: &str, site: &str) -> Result<(), DirectoryError> {
        forward!(self.set_location(vm, site))
    }

    /// The site a VM runs on, if recorded.
    ///
    /// # Errors
    /// Invalid name or backend failure.
    pub async fn location(&self, vm: &str) -> Result<Option<String>, DirectoryError> {
        forward!(self.location(vm))
    }

    /// Every recorded VM location (VM name to site name).
    ///
    /// # Errors
    /// Backend failure.
    pub async fn locations(&self) -> Result<BTreeMap<String, String>, DirectoryError> {
        forward!(self.locations())
    }

    /// Takes the lease on `vm` for `ttl`; `None` when someone holds it.
    ///
    /// # Errors
    /// Invalid names or TTL, or backend failure.
    pub async fn acquire(
        &self,
        vm: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, DirectoryError> {
        forward!(self.acquire(vm, holder, ttl))
    }

    /// Extends the lease by its TTL; `false` when it was already lost
    /// (the holder must stop deciding about the VM).
    ///
    /// # Errors
    /// Backend failure, or a lease from the other backend.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, DirectoryError> {
        forward!(self.renew(lease))
    }

    /// Gives the lease up (nothing if it was already lost).
    ///
    /// # Errors
    /// Backend failure, or a lease from the other backend.
    pub async fn release(&self, lease: Lease) -> Result<(), DirectoryError> {
        forward!(self.release(lease))
    }

    /// Fencing check before acting: `Ok` only while the lease is held.
    ///
    /// # Errors
    /// [`DirectoryError::LeaseLost`] when it is not, or backend failure.
    pub async fn check_lease(&self, lease: &Lease) -> Result<(), DirectoryError> {
        forward!(self.check_lease(lease))
    }

    /// Records where the lease's VM runs, atomically with the fencing check.
    ///
    /// # Errors
    /// [`DirectoryError::LeaseLost`] (nothing written), invalid site name,
    /// or backend failure.
    pub async fn guarded_set_location(
        &self,
        lease: &Lease,
        site: &str,
    ) -> Result<(), DirectoryError> {
        forward!(self.guarded_set_location(lease, site))
    }

    /// Who holds a VM's lease right now, if anyone (for status output).
    ///
    /// # Errors
    /// Invalid name or backend failure.
    pub async fn lease_holder(&self, vm: &str) -> Result<Option<String>, DirectoryError> {
        forward!(self.lease_holder(vm))
    }
}

impl From<EmbeddedDirectory> for Directory {
    fn from(d: EmbeddedDirectory) -> Self {
        Self::Embedded(d)
    }
}

impl From<EtcdDirectory> for Directory {
    fn from(d: EtcdDirectory) -> Self {
        Self::Etcd(d)
    }
}
