//! The byte layout's constants and the helpers that both the reader and the writer use.

use crate::data::checksum;
use std::fs::File;
use std::io::Read;
use std::path::Path;

#[cfg(target_endian = "big")]
compile_error!(
    "the era store is little-endian and is cast in place: big-endian hosts are not supported"
);

/// The feature code for a missing value (features are otherwise 0..4).
pub const MISSING: i8 = -1;
/// File magic, the first 8 bytes of every store.
pub const MAGIC: [u8; 8] = *b"ERASTORE";
/// The format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Every section starts at a multiple of this.
pub const ALIGN: u64 = 64;
pub const N_SECTIONS: usize = 7;
pub(super) const HEADER_FIXED: usize = 64;
pub(super) const SECTION_ENTRY: usize = 32;
/// Bytes covered by the header checksum: fixed header + section table.
pub const HEADER_LEN: usize = HEADER_FIXED + N_SECTIONS * SECTION_ENTRY;

pub const SEC_FEATURE_NAMES: u32 = 1;
pub const SEC_TARGET_NAMES: u32 = 2;
pub const SEC_ERA_TABLE: u32 = 3;
pub const SEC_ROW_IDS: u32 = 4;
pub const SEC_FEATURES: u32 = 5;
pub const SEC_TARGETS: u32 = 6;
pub const SEC_ERA_STATS: u32 = 7;

/// Name of section `kind` in error messages.
pub fn section_name(kind: u32) -> &'static str {
    match kind {
        SEC_FEATURE_NAMES => "feature names section",
        SEC_TARGET_NAMES => "target names section",
        SEC_ERA_TABLE => "era table section",
        SEC_ROW_IDS => "row ids section",
        SEC_FEATURES => "features section",
        SEC_TARGETS => "targets section",
        SEC_ERA_STATS => "era stats section",
        _ => "unknown section",
    }
}

pub(super) fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

pub(super) fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// One entry of the section table (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SectionEntry {
    pub kind: u32,
    pub reserved: u32,
    pub offset: u64,
    pub len: u64,
    pub reserved2: u64,
}

/// The header and section table exactly as stored (`HEADER_LEN` bytes, little-endian: the crate
/// refuses big-endian targets above).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub n_sections: u32,
    pub n_rows: u64,
    pub n_eras: u64,
    pub n_features: u64,
    pub n_targets: u64,
    /// `Header::checksum` of this header.
    pub header_checksum: u64,
    pub data_checksum: u64,
    pub sections: [SectionEntry; N_SECTIONS],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(std::mem::size_of::<SectionEntry>() == SECTION_ENTRY);

impl Header {
    /// The first `HEADER_LEN` bytes of `b` (which must be at least that long).
    pub fn read(b: &[u8]) -> Header {
        bytemuck::pod_read_unaligned(&b[..HEADER_LEN])
    }
    pub fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
    /// The header checksum: over the header and section table with `header_checksum` taken as
    /// zero.
    pub fn checksum(&self) -> u64 {
        let mut h = *self;
        h.header_checksum = 0;
        checksum::hash(h.bytes())
    }
}

// ------------------------------------------------------------------------------------------------
// Reading

/// (missing values, values outside 0..4 that are not `MISSING`) in a feature slice. Branch-free so
/// that it vectorizes: this runs over every byte on write and on verify.
pub(super) fn count_codes(features: &[i8]) -> (u64, u64) {
    let (mut missing, mut bad) = (0u64, 0u64);
    for chunk in features.chunks(1 << 16) {
        let (mut m, mut b) = (0u32, 0u32);
        for &v in chunk {
            m += u32::from(v == MISSING);
            // v ∈ -1..=4  ⇔  (v + 1) as u8 ≤ 5
            b += u32::from((v as u8).wrapping_add(1) > 5);
        }
        missing += u64::from(m);
        bad += u64::from(b);
    }
    (missing, bad)
}

/// True if the file at `path` starts with the store magic.
pub fn is_store(path: &Path) -> bool {
    let mut m = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut m))
        .map(|_| m == MAGIC)
        .unwrap_or(false)
}

/// One row of the era table.
#[derive(Clone, Debug)]
pub(super) struct EraEntry {
    pub(super) name: String,
    pub(super) first_row: usize,
    pub(super) n_rows: usize,
}
