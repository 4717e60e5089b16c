//! The etcd directory: the same records as the embedded one, in an etcd v3
//! cluster (tested against etcd 3.4), so controllers on different machines
//! share one view.
//!
//! - Sites and locations are plain keys (layout in `keys.rs`).
//! - A VM lease is an etcd lease (granted with the TTL, kept alive by
//!   [`EtcdDirectory::renew`]) to which the key `<prefix>/leases/<vm>` is
//!   attached; acquiring is a transaction that creates that key only if it
//!   does not exist (`create_revision == 0`).
//! - Guarded operations are transactions that compare the lease key's
//!   `create_revision` (unique per acquisition) and value (the holder): when
//!   the etcd lease expired or was revoked, etcd deleted the key and the
//!   comparison fails.
//! - Every request has a deadline ([`DEFAULT_TIMEOUT`] by default): an
//!   unreachable cluster gives [`DirectoryError::Unavailable`] quickly.
//!
//! Plain HTTP only: the `etcd-client` crate is built without TLS and no
//! authentication is configured (enough for a cluster on a private network
//! or the tests; add the `tls` feature and credentials for real deployments).

mod call;
mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, Error, GetOptions, KeyValue, PutOptions, Txn,
    TxnOp, TxnOpResponse,
};
use tonic::Code;

use crate::error::DirectoryError;
use crate::model::{Fence, Lease, SiteEntry, check_name, check_ttl, now_ms};
use call::call;
use keys::Keys;

/// Connect and request timeout used by [`EtcdDirectory::connect`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Extra time over the client's own timeout before our deadline fires.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// A handle on an etcd cluster used as the directory. Cheap to clone.
#[derive(Clone)]
pub struct EtcdDirectory {
    /// Boxed behind an `Arc`: the client is several kB.
    client: Arc<Client>,
    keys: Keys,
    endpoints: String,
    deadline: Duration,
}

impl fmt::Debug for EtcdDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDirectory")
            .field("endpoints", &self.endpoints)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Whole seconds for an etcd lease TTL, rounded up, at least 1.
fn ttl_secs(ttl: Duration) -> i64 {
    let ms = ttl.as_millis().div_ceil(1000).max(1);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Whether a lease RPC failed because the lease no longer exists.
fn is_lease_gone(e: &Error) -> bool {
    match e {
        Error::LeaseKeepAliveError(_) => true,
        Error::GRpcStatus(s) => s.code() == Code::NotFound,
        _ => false,
    }
}

impl EtcdDirectory {
    /// Connects to `endpoints` (`http://host:port` or `host:port`) with
    /// [`DEFAULT_TIMEOUT`], keeping keys under `prefix`. The connection is
    /// lazy: this succeeds even while etcd is down (check with
    /// [`Self::health`]).
    ///
    /// # Errors
    /// Invalid endpoints.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, DirectoryError> {
        Self::connect_with_timeout(endpoints, prefix, DEFAULT_TIMEOUT).await
    }

    /// Like [`Self::connect`] with another connect and request timeout.
    ///
    /// # Errors
    /// Invalid endpoints.
    pub async fn connect_with_timeout(
        endpoints: &[String],
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, DirectoryError> {
        let joined = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        let deadline = timeout + DEADLINE_MARGIN;
        let connecting = Client::connect(endpoints, Some(options));
        let client = match tokio::time::timeout(deadline, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(call::classify(&joined, "connect", e)),
            Err(_) => {
                return Err(DirectoryError::Unavailable {
                    endpoints: joined,
                    operation: "connect",
                    source: None,
                });
            }
        };
        Ok(Self {
            client: Arc::new(client),
            keys: Keys::new(prefix),
            endpoints: joined,
            deadline,
        })
    }

    async fn call<T, F, Fut>(&self, operation: &'static str, f: F) -> Result<T, DirectoryError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        call(&self.client, &self.endpoints, self.deadline, operation, f).await
    }

    /// Gets one key's value, if it exists.
    async fn get_one(
        &self,
        operation: &'static str,
        key: String,
    ) -> Result<Option<KeyValue>, DirectoryError> {
        let mut resp = self
            .call(operation, |mut c| async move { c.get(key, None).await })
            .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Gets every key under a prefix, sorted by key.
    async fn get_prefix(
        &self,
        operation: &'static str,
        prefix: String,
    ) -> Result<Vec<KeyValue>, DirectoryError> {
        let mut resp = self
            .call(operation, |mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        Ok(resp.take_kvs())
    }

    /// Checks the cluster answers a linearizable read (needs a leader).
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when it does not.
    pub async fn health(&self) -> Result<(), DirectoryError> {
        let key = self.keys.sites();
        self.call("health check", |mut c| async move {
            c.get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                .await
        })
        .await
        .map(drop)
    }

    /// Registers or refreshes a site; returns the stored entry.
    ///
    /// # Errors
    /// Invalid name, unavailable cluster.
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
        let key = self.keys.site(name);
        let value = serde_json::to_vec(&entry).map_err(|source| DirectoryError::Corrupt {
            what: key.clone(),
            source,
        })?;
        self.call("register site", |mut c| async move {
            c.put(key, value, None).await
        })
        .await?;
        Ok(entry)
    }

    /// One site, if registered.
    ///
    /// # Errors
    /// Invalid name, unavailable cluster, corrupt record.
    pub async fn site(&self, name: &str) -> Result<Option<SiteEntry>, DirectoryError> {
        check_name("site", name)?;
        self.get_one("get site", self.keys.site(name))
            .await?
            .map(|kv| parse_site(&kv))
            .transpose()
    }

    /// Every registered site, sorted by name.
    ///
    /// # Errors
    /// Unavailable cluster, corrupt record.
    pub async fn sites(&self) -> Result<Vec<SiteEntry>, DirectoryError> {
        self.get_prefix("list sites", self.keys.sites())
            .await?
            .iter()
            .map(parse_site)
            .collect()
    }

    /// Removes a site (nothing if it was not registered).
    ///
    /// # Errors
    /// Invalid name, unavailable cluster.
    pub async fn remove_site(&self, name: &str) -> Result<(), DirectoryError> {
        check_name("site", name)?;
        let key = self.keys.site(name);
        self.call(
            "remove site",
            |mut c| async move { c.delete(key, None).await },
        )
        .await
        .map(drop)
    }

    /// Records where a VM runs, without any lease (initial placement or an
    /// operator's correction; controllers use `guarded_set_location`).
    ///
    /// # Errors
    /// Invalid names, unavailable cluster.
    pub async fn set_location(&self, vm: &str, site: &str) -> Result<(), DirectoryError> {
        check_name("VM", vm)?;
        check_name("site", site)?;
        let (key, site) = (self.keys.vm_site(vm), site.to_owned());
        self.call("set location", |mut c| async move {
            c.put(key, site, None).await
        })
        .await
        .map(drop)
    }

    /// The site a VM runs on, if recorded.
    ///
    /// # Errors
    /// Invalid name, unavailable cluster.
    pub async fn location(&self, vm: &str) -> Result<Option<String>, DirectoryError> {
        check_name("VM", vm)?;
        Ok(self
            .get_one("get location", self.keys.vm_site(vm))
            .await?
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Every recorded VM location (VM name to site name).
    ///
    /// # Errors
    /// Unavailable cluster.
    pub async fn locations(&self) -> Result<BTreeMap<String, String>, DirectoryError> {
        let kvs = self.get_prefix("list locations", self.keys.vms()).await?;
        let mut map = BTreeMap::new();
        for kv in &kvs {
            let key = String::from_utf8_lossy(kv.key());
            if let Some(vm) = self.keys.vm_of(&key) {
                map.insert(
                    vm.to_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                );
            }
        }
        Ok(map)
    }

    /// Takes the lease on `vm` if nobody holds it: grants an etcd lease of
    /// `ttl` (whole seconds, rounded up) and creates the lease key attached
    /// to it. `None` (and the new etcd lease revoked) when the key exists.
    ///
    /// # Errors
    /// Invalid names or TTL, unavailable cluster.
    pub async fn acquire(
        &self,
        vm: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, DirectoryError> {
        check_name("VM", vm)?;
        check_name("holder", holder)?;
        check_ttl(ttl)?;
        let secs = ttl_secs(ttl);
        let grant = self
            .call("grant lease", |mut c| async move {
                c.lease_grant(secs, None).await
            })
            .await?;
        let lease_id = grant.id();
        let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
        let key = self.keys.lease(vm);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(
                    key.clone(),
                    holder,
                    Some(PutOptions::new().with_lease(lease_id)),
                ),
                TxnOp::get(key.clone(), None),
            ]);
        let outcome = self
            .call("acquire lease", |mut c| async move { c.txn(txn).await })
            .await;
        let resp = match outcome {
            Ok(resp) if resp.succeeded() => resp,
            other => {
                // Not ours (or unknown): drop the etcd lease; if this fails it
                // expires by itself after the TTL.
                let _ = self.revoke(lease_id).await;
                return other.map(|_| None);
            }
        };
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(KeyValue::create_revision),
                _ => None,
            })
            .ok_or_else(|| DirectoryError::Protocol {
                operation: "acquire lease",
                detail: format!("no value for {key} in a successful transaction"),
            })?;
        Ok(Some(Lease {
            vm: vm.to_owned(),
            holder: holder.to_owned(),
            ttl: granted,
            fence: Fence::Etcd {
                lease_id,
                create_revision,
            },
        }))
    }

    /// Revokes an etcd lease; a lease already gone is fine.
    async fn revoke(&self, lease_id: i64) -> Result<(), DirectoryError> {
        let outcome = tokio::time::timeout(self.deadline, async {
            Client::clone(&self.client).lease_revoke(lease_id).await
        })
        .await;
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if is_lease_gone(&e) => Ok(()),
            Ok(Err(e)) => Err(call::classify(&self.endpoints, "revoke lease", e)),
            Err(_) => Err(DirectoryError::Unavailable {
                endpoints: self.endpoints.clone(),
                operation: "revoke lease",
                source: None,
            }),
        }
    }

    /// Keeps the etcd lease alive for another TTL. `false` when it already
    /// expired or the lease key is no longer ours.
    ///
    /// # Errors
    /// Unavailable cluster, or a lease from another backend.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, DirectoryError> {
        let Fence::Etcd { lease_id, .. } = lease.fence else {
            return Err(lease.foreign());
        };
        let outcome = tokio::time::timeout(self.deadline, async {
            // One request on a fresh keep-alive stream: the client sends it
            // and fails when the answer says the lease is gone.
            Client::clone(&self.client).lease_keep_alive(lease_id).await
        })
        .await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if is_lease_gone(&e) => return Ok(false),
            Ok(Err(e)) => return Err(call::classify(&self.endpoints, "renew lease", e)),
            Err(_) => {
                return Err(DirectoryError::Unavailable {
                    endpoints: self.endpoints.clone(),
                    operation: "renew lease",
                    source: None,
                });
            }
        }
        match self.check_lease(lease).await {
            Ok(()) => Ok(true),
            Err(DirectoryError::LeaseLost { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up: revokes the etcd lease, which deletes the lease
    /// key (nothing if it was already lost).
    ///
    /// # Errors
    /// Unavailable cluster (the lease then expires after its TTL), or a
    /// lease from another backend.
    pub async fn release(&self, lease: Lease) -> Result<(), DirectoryError> {
        let Fence::Etcd { lease_id, .. } = lease.fence else {
            return Err(lease.foreign());
        };
        self.revoke(lease_id).await
    }

    /// The comparisons that hold only while `lease` is current.
    fn guard(&self, lease: &Lease) -> Result<[Compare; 2], DirectoryError> {
        let Fence::Etcd {
            create_revision, ..
        } = lease.fence
        else {
            return Err(lease.foreign());
        };
        let key = self.keys.lease(&lease.vm);
        Ok([
            Compare::create_revision(key.clone(), CompareOp::Equal, create_revision),
            Compare::value(key, CompareOp::Equal, lease.holder.clone()),
        ])
    }

    /// Runs `ops` only if `lease` is current.
    async fn guarded(
        &self,
        operation: &'static str,
        lease: &Lease,
        ops: Vec<TxnOp>,
    ) -> Result<(), DirectoryError> {
        let txn = Txn::new().when(self.guard(lease)?).and_then(ops);
        let resp = self
            .call(operation, |mut c| async move { c.txn(txn).await })
            .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(lease.lost())
        }
    }

    /// Fencing check: `Ok` only while `lease` is held (its key exists, was
    /// created by this acquisition and names its holder).
    ///
    /// # Errors
    /// [`DirectoryError::LeaseLost`], unavailable cluster.
    pub async fn check_lease(&self, lease: &Lease) -> Result<(), DirectoryError> {
        self.guarded("check lease", lease, Vec::new()).await
    }

    /// Records where the lease's VM runs, in one transaction with the
    /// fencing check.
    ///
    /// # Errors
    /// [`DirectoryError::LeaseLost`] (nothing written), invalid site name,
    /// unavailable cluster.
    pub async fn guarded_set_location(
        &self,
        lease: &Lease,
        site: &str,
    ) -> Result<(), DirectoryError> {
        check_name("site", site)?;
        let op = TxnOp::put(self.keys.vm_site(&lease.vm), site, None);
        self.guarded("guarded set location", lease, vec![op]).await
    }

    /// The current holder of a VM's lease, if any.
    ///
    /// # Errors
    /// Invalid name, unavailable cluster.
    pub async fn lease_holder(&self, vm: &str) -> Result<Option<String>, DirectoryError> {
        check_name("VM", vm)?;
        Ok(self
            .get_one("get lease holder", self.keys.lease(vm))
            .await?
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }
}

/// Decodes a site record.
fn parse_site(kv: &KeyValue) -> Result<SiteEntry, DirectoryError> {
    serde_json::from_slice(kv.value()).map_err(|source| DirectoryError::Corrupt {
        what: String::from_utf8_lossy(kv.key()).into_owned(),
        source,
    })
}
