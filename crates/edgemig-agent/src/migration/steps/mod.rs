//! The steps of a migration, in order; each file holds a step's forward
//! action and its rollback, source and destination side by side.

pub mod disk;
pub mod memory;
pub mod network;
pub mod prepare;
pub mod switchover;
