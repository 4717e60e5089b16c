//! Live migration between sites: the QMP steps on both QEMUs and the
//! source-side orchestration.

pub mod path_meter;
pub mod qmp_steps;
pub mod registry;
pub mod source;
