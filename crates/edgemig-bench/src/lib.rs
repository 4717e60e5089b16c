//! edgemig's benchmarks. Each one measures edgemig and its baseline in the
//! same run, on a testbed it brings up and removes itself, and reports
//! ratios together with the conditions.

pub mod base_image;
pub mod cpu;
pub mod demo;
pub mod follow;
pub mod handoff;
pub mod links;
pub mod migrate;
pub mod paper;
pub mod runner;
pub mod session;
pub mod soak;
pub mod tools;

pub use demo::{DemoOptions, DemoSummary, run_demo};
pub use follow::{FollowBenchOptions, FollowBenchReport, run_follow_bench};
pub use handoff::{HandoffOptions, HandoffReport, run_handoff_bench};
pub use links::{LinksOptions, LinksReport, LinksRun, run_links};
pub use migrate::{
    DiskSetup, MigrateBenchOptions, MigrateBenchReport, Scenario, run_migrate_bench,
};
pub use paper::{PaperOptions, PaperOutput, PaperResults, run_paper};
