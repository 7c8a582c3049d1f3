//! The era store (memory-mapped, zero-copy), Numerai import, synthetic data, era preprocessing.
