//! eraengine: era-level transformer training for Numerai tournament data.
//!
//! Layers from the ground up (each uses only those below it; docs/architecture.md draws them and
//! `tests/architecture.rs` checks there are no import circles): `rng`; the op leaves (`ops::par`,
//! `ops::shape`, `ops::scalar`); `device` (the `Backend` trait, the CPU backend); `gpu` buffers and
//! launchers; `params`; `tape::base`; one folder per op under `ops` (math, CPU fwd/bwd, tape record
//! and backward, GPU launch recipe); `tape` (backward dispatch); `data`; `model`; `checkpoint`;
//! `metrics`; `train`; `cli`.

pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod gpu;
pub mod metrics;
pub mod ops;
pub mod rng;

pub use error::{Error, Result};
pub mod bench;
pub mod checkpoint;
pub mod io;
pub mod memory;
pub mod model;
pub mod params;
pub mod progress;
pub mod tape;
pub mod train;
