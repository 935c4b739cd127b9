//! The store's tests against real redb files, as one test binary (one link instead of five).

mod alerts;
mod deploys;
mod history;
mod store;
mod tasks;
