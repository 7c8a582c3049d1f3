//! The era store: one little-endian file, memory-mapped, read without copies.
//!
//! The byte layout is documented in `docs/era-store.md`; this module is its only reader and writer
//! (`format.rs`: constants and the `Header` struct; `read.rs`: `Store`; `view.rs`: its `EraView`
//! and `Ids`; `write.rs`: `StoreWriter`).
//! Summary: a 64-byte header and a table of 7 sections, then the sections, each starting on a
//! 64-byte boundary so that it can be cast in place (`bytemuck`) once mapped:
//!
//! | kind | section        | content                                                        |
//! |------|----------------|----------------------------------------------------------------|
//! | 1    | feature names  | string table of F names                                        |
//! | 2    | target names   | string table of T names                                        |
//! | 3    | era table      | E × [first_row u64, rows u64], then a string table of E names  |
//! | 4    | row ids        | string table of `rows` ids                                     |
//! | 5    | features       | i8 [rows, F] row-major, 0..4, `MISSING` for a missing value    |
//! | 6    | targets        | f32 [rows, T] row-major, NaN for a missing value               |
//! | 7    | era stats      | u64 [E, 1 + T]: missing features, then missing values per target |
//!
//! A string table is `u64 offsets[n + 1]` (offsets[0] = 0, non-decreasing) followed by the UTF-8
//! bytes; string i is `bytes[offsets[i]..offsets[i + 1]]`.
//!
//! `Store::open` checks the header checksum and every offset/length against the file size, and
//! validates the small sections (names, era table, ids); it never reads the feature or target
//! pages. `Store::verify` reads everything: the data checksum, every value's range, the era stats.

pub mod format;
mod read;
mod view;
mod write;

pub use format::*;
pub use read::Store;
pub use view::{EraView, Ids};
pub use write::{temp_path, StoreWriter};
