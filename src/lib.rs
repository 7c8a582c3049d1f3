//! eraengine: era-level transformer training for Numerai tournament data.
//!
//! Layers from the ground up (each uses only those below it): `rng`, `ops` (CPU reference ops),
//! `device` (backends: CPU, CUDA, emulator), `data` (era store, import, synth), `params`, `tape`,
//! `model`, `checkpoint`, `metrics`, `train`, `cli`.

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
pub mod model;
pub mod params;
pub mod tape;
pub mod train;
