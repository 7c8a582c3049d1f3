//! The era store (memory-mapped, zero-copy), Numerai import, synthetic data, era preprocessing.
//!
//! - `store`: the file format (`docs/era-store.md`), `Store` (reader) and `StoreWriter`
//! - `batch`: SPEC §3 preprocessing of an era (median imputation, scaling, target mask)
//! - `import`: Numerai parquet / CSV → store (`eraengine import`)
//! - `synth`: synthetic Numerai-shaped data with era-dependent signal (`eraengine synth`, and the
//!   built-in dataset `train` uses when given no data)

pub mod batch;
pub mod checksum;
pub mod columns;
pub mod csv;
pub mod import;
#[cfg(feature = "parquet")]
pub mod pq;
pub mod store;
pub mod synth;

pub use batch::{imputed_features, preprocess_features};
pub use store::{EraView, Store, StoreWriter, MISSING};
pub use synth::{builtin, SynthConfig};
