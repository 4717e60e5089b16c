//! The `edgemig` command-line interface: parsing, talking to the local
//! agent, and printing results for humans or as JSON.

pub mod cli;
pub mod exit;
pub mod size;
