//! The etcd key layout under a prefix.
//!
//! `<prefix>/sites/<name>` holds a [`crate::SiteEntry`] as JSON,
//! `<prefix>/vms/<vm>/site` the site name of a VM, and
//! `<prefix>/leases/<vm>` the holder name, attached to an etcd lease.

/// Builds keys under one prefix (without trailing slash).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` with trailing slashes removed (empty is allowed).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub(crate) fn sites(&self) -> String {
        format!("{}/sites/", self.prefix)
    }

    pub(crate) fn site(&self, name: &str) -> String {
        format!("{}/sites/{name}", self.prefix)
    }

    pub(crate) fn vms(&self) -> String {
        format!("{}/vms/", self.prefix)
    }

    pub(crate) fn vm_site(&self, vm: &str) -> String {
        format!("{}/vms/{vm}/site", self.prefix)
    }

    /// The VM name of a `<prefix>/vms/<vm>/site` key.
    pub(crate) fn vm_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.vms().as_str())?
            .strip_suffix("/site")
            .filter(|vm| !vm.contains('/'))
    }

    pub(crate) fn lease(&self, vm: &str) -> String {
        format!("{}/leases/{vm}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn layout_and_vm_of() {
        let k = Keys::new("/edgemig/");
        assert_eq!(k.site("a"), "/edgemig/sites/a");
        assert_eq!(k.vm_site("vm1"), "/edgemig/vms/vm1/site");
        assert_eq!(k.lease("vm1"), "/edgemig/leases/vm1");
        assert_eq!(k.vm_of("/edgemig/vms/vm1/site"), Some("vm1"));
        assert_eq!(k.vm_of("/edgemig/vms/vm1/other"), None);
        assert_eq!(k.vm_of("/other/vms/vm1/site"), None);
    }
}
