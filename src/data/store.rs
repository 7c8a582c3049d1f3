//! The era store: one little-endian file, memory-mapped, read without copies.
//!
//! The byte layout is documented in `docs/era-store.md`; this file is its only reader and writer.
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

use super::checksum::{self, Hasher};
use crate::{Error, Result};
use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
const HEADER_FIXED: usize = 64;
const SECTION_ENTRY: usize = 32;
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

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Header checksum: over the header and section table with the checksum field (bytes 48..56)
/// taken as zero.
fn header_checksum(header: &[u8]) -> u64 {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&header[..HEADER_LEN]);
    h[48..56].fill(0);
    checksum::hash(&h)
}

// ------------------------------------------------------------------------------------------------
// Reading

#[derive(Clone, Debug)]
struct EraEntry {
    name: String,
    first_row: usize,
    n_rows: usize,
}

/// A memory-mapped era store. Cheap to open (header, names and ids only); data pages are read
/// by the OS when an era's slices are first touched.
pub struct Store {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    n_rows: usize,
    n_features: usize,
    n_targets: usize,
    feature_names: Vec<String>,
    target_names: Vec<String>,
    eras: Vec<EraEntry>,
    data_checksum: u64,
    /// Byte ranges of sections in the map.
    features: (usize, usize),
    targets: (usize, usize),
    era_stats: (usize, usize),
    id_offsets: (usize, usize),
    id_bytes: (usize, usize),
}

/// The ids of a run of rows: offsets into a UTF-8 blob validated at open.
#[derive(Clone, Copy, Debug)]
pub struct Ids<'a> {
    offsets: &'a [u64],
    bytes: &'a [u8],
}

impl<'a> Ids<'a> {
    /// Id of row `row` of this run (panics if `row` is out of range, like slice indexing).
    pub fn get(&self, row: usize) -> &'a str {
        // offsets are validated at open: non-decreasing, within the blob, on char boundaries,
        // so this never fails; the per-id UTF-8 check costs O(id length)
        let a = self.offsets[row] as usize;
        let b = self.offsets[row + 1] as usize;
        std::str::from_utf8(&self.bytes[a..b]).unwrap_or("")
    }
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One era: rows `first_row .. first_row + n_rows` of the store, sliced from the map.
#[derive(Clone, Copy, Debug)]
pub struct EraView<'a> {
    pub name: &'a str,
    pub first_row: usize,
    pub n_rows: usize,
    pub n_features: usize,
    pub n_targets: usize,
    /// [n_rows, n_features] row-major, values 0..4 or `MISSING`.
    pub features: &'a [i8],
    /// [n_rows, n_targets] row-major, NaN = missing.
    pub targets: &'a [f32],
    pub ids: Ids<'a>,
    /// Missing feature values in this era, and missing values per target (from the era stats).
    pub missing_features: u64,
    pub missing_targets: &'a [u64],
}

impl<'a> EraView<'a> {
    /// Id of row `row` of the era (0-based within the era).
    pub fn id(&self, row: usize) -> &'a str {
        self.ids.get(row)
    }
    /// Target `t` of row `row`.
    pub fn target(&self, row: usize, t: usize) -> f32 {
        self.targets[row * self.n_targets + t]
    }
    /// Row `row`'s features.
    pub fn row(&self, row: usize) -> &'a [i8] {
        &self.features[row * self.n_features..(row + 1) * self.n_features]
    }
    /// True when every target value of the era is missing (e.g. the newest validation eras, live).
    pub fn all_targets_missing(&self) -> bool {
        self.missing_targets
            .iter()
            .all(|&m| m as usize == self.n_rows)
    }
}

struct Section {
    offset: usize,
    len: usize,
}

/// Parse a string table at `bytes` holding `n` strings. `what` names the section in errors.
fn parse_strings<'a>(
    path: &Path,
    what: &str,
    bytes: &'a [u8],
    n: usize,
) -> Result<(&'a [u64], &'a str)> {
    let bad = |msg: String| Error::format(path, what, msg);
    let head = n
        .checked_add(1)
        .and_then(|k| k.checked_mul(8))
        .ok_or_else(|| bad(format!("string count {n} is too large")))?;
    if bytes.len() < head {
        return Err(bad(format!(
            "{} bytes cannot hold the offsets of {n} strings",
            bytes.len()
        )));
    }
    let offsets: &[u64] = bytemuck::try_cast_slice(&bytes[..head])
        .map_err(|e| bad(format!("offsets are not castable: {e:?}")))?;
    let blob = &bytes[head..];
    let blob = std::str::from_utf8(blob).map_err(|e| bad(format!("strings are not UTF-8: {e}")))?;
    if offsets[0] != 0 {
        return Err(bad(format!("first string offset is {}, not 0", offsets[0])));
    }
    if offsets[n] != blob.len() as u64 {
        return Err(bad(format!(
            "last string offset is {} but the strings take {} bytes",
            offsets[n],
            blob.len()
        )));
    }
    for i in 0..n {
        let (a, b) = (offsets[i], offsets[i + 1]);
        if a > b {
            return Err(bad(format!("string {i}: offsets {a} > {b}")));
        }
        if !blob.is_char_boundary(b as usize) {
            return Err(bad(format!(
                "string {i}: offset {b} splits a UTF-8 character"
            )));
        }
    }
    Ok((offsets, blob))
}

fn owned_strings(offsets: &[u64], blob: &str) -> Vec<String> {
    let ids = Ids {
        offsets,
        bytes: blob.as_bytes(),
    };
    (0..ids.len()).map(|i| ids.get(i).to_string()).collect()
}

impl Store {
    /// Map and validate a store. Reads the header, the section table, names, era table and ids;
    /// never the feature or target pages.
    pub fn open(path: &Path) -> Result<Store> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a store must not be modified while it is open (as for any
        // memory-mapped file). Every slice handed out is bounds-checked against the map below.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_map(path, mmap)
    }

    fn from_map(path: &Path, mmap: Mmap) -> Result<Store> {
        let b: &[u8] = &mmap;
        let file_len = b.len();
        if file_len < 8 || b[..8] != MAGIC {
            let hint = if b.starts_with(b"PAR1") || path.extension().is_some_and(|e| e == "csv") {
                ": it looks like Numerai data; convert it with `eraengine import`"
            } else {
                ""
            };
            return Err(Error::format(
                path,
                "header",
                format!("not an era store (wrong magic; expected \"ERASTORE\"){hint}"),
            ));
        }
        if file_len < HEADER_LEN {
            return Err(Error::format(
                path,
                "header",
                format!("file is {file_len} bytes, shorter than the {HEADER_LEN}-byte header (truncated?)"),
            ));
        }
        let version = rd_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(Error::format(
                path,
                "header",
                format!("format version {version}; this eraengine reads version {FORMAT_VERSION}"),
            ));
        }
        let stored = rd_u64(b, 48);
        let computed = header_checksum(b);
        if stored != computed {
            return Err(Error::format(
                path,
                "header",
                format!("header checksum mismatch (stored {stored:016x}, computed {computed:016x}): the header or section table is corrupt"),
            ));
        }
        let n_sections = rd_u32(b, 12) as usize;
        if n_sections != N_SECTIONS {
            return Err(Error::format(
                path,
                "header",
                format!("{n_sections} sections, expected {N_SECTIONS}"),
            ));
        }
        let too_big = |what: &str, v: u64| {
            Error::format(
                path,
                "header",
                format!("{what} count {v} is implausibly large"),
            )
        };
        let n_rows_u = rd_u64(b, 16);
        let n_eras_u = rd_u64(b, 24);
        let n_features_u = rd_u64(b, 32);
        let n_targets_u = rd_u64(b, 40);
        // Every count must fit in the file (ids need 8 bytes per row, names 8 bytes each...).
        for (what, v) in [
            ("row", n_rows_u),
            ("era", n_eras_u),
            ("feature", n_features_u),
            ("target", n_targets_u),
        ] {
            if v > file_len as u64 {
                return Err(too_big(what, v));
            }
        }
        let (n_rows, n_eras) = (n_rows_u as usize, n_eras_u as usize);
        let (n_features, n_targets) = (n_features_u as usize, n_targets_u as usize);
        let data_checksum = rd_u64(b, 56);

        let mut secs = Vec::with_capacity(N_SECTIONS);
        for i in 0..N_SECTIONS {
            let at = HEADER_FIXED + i * SECTION_ENTRY;
            let kind = rd_u32(b, at);
            let want = i as u32 + 1;
            let place = format!("section table entry {i}");
            if kind != want {
                return Err(Error::format(
                    path,
                    place,
                    format!("kind {kind}, expected {want} ({})", section_name(want)),
                ));
            }
            let offset = rd_u64(b, at + 8);
            let len = rd_u64(b, at + 16);
            let end = offset.checked_add(len);
            if !offset.is_multiple_of(ALIGN) || offset < HEADER_LEN as u64 {
                return Err(Error::format(
                    path,
                    section_name(kind),
                    format!("offset {offset} is not a 64-byte aligned position after the header"),
                ));
            }
            match end {
                Some(e) if e <= file_len as u64 => {}
                _ => {
                    return Err(Error::format(
                        path,
                        section_name(kind),
                        format!(
                            "offset {offset} + length {len} runs past the end of the {file_len}-byte file (truncated?)"
                        ),
                    ))
                }
            }
            secs.push(Section {
                offset: offset as usize,
                len: len as usize,
            });
        }
        let bytes_of = |s: &Section| &b[s.offset..s.offset + s.len];
        let expect_len = |kind: u32, want: Option<usize>| -> Result<()> {
            let got = secs[kind as usize - 1].len;
            match want {
                Some(w) if w == got => Ok(()),
                _ => Err(Error::format(
                    path,
                    section_name(kind),
                    format!(
                        "length {got} does not match the header (rows {n_rows}, eras {n_eras}, features {n_features}, targets {n_targets})"
                    ),
                )),
            }
        };
        expect_len(SEC_FEATURES, n_rows.checked_mul(n_features))?;
        expect_len(
            SEC_TARGETS,
            n_rows.checked_mul(n_targets).and_then(|x| x.checked_mul(4)),
        )?;
        expect_len(
            SEC_ERA_STATS,
            n_targets
                .checked_add(1)
                .and_then(|x| x.checked_mul(n_eras))
                .and_then(|x| x.checked_mul(8)),
        )?;

        let (fo, fb) = parse_strings(
            path,
            section_name(SEC_FEATURE_NAMES),
            bytes_of(&secs[0]),
            n_features,
        )?;
        let feature_names = owned_strings(fo, fb);
        let (to, tb) = parse_strings(
            path,
            section_name(SEC_TARGET_NAMES),
            bytes_of(&secs[1]),
            n_targets,
        )?;
        let target_names = owned_strings(to, tb);

        // Era table: E × [first_row, rows], then the names.
        let et = bytes_of(&secs[2]);
        let rec_len = n_eras
            .checked_mul(16)
            .filter(|&l| l <= et.len())
            .ok_or_else(|| {
                Error::format(
                    path,
                    section_name(SEC_ERA_TABLE),
                    format!("{} bytes cannot hold {n_eras} era records", et.len()),
                )
            })?;
        let (eo, eb) = parse_strings(path, section_name(SEC_ERA_TABLE), &et[rec_len..], n_eras)?;
        let mut eras = Vec::with_capacity(n_eras);
        let mut next_row = 0u64;
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n_eras);
        let era_names = Ids {
            offsets: eo,
            bytes: eb.as_bytes(),
        };
        for i in 0..n_eras {
            let first = rd_u64(et, 16 * i);
            let rows = rd_u64(et, 16 * i + 8);
            let name = era_names.get(i);
            let place = format!("{}, era {i} ({name:?})", section_name(SEC_ERA_TABLE));
            if first != next_row {
                return Err(Error::format(
                    path,
                    place,
                    format!("first row {first}, expected {next_row} (eras must be contiguous and in order)"),
                ));
            }
            next_row = match first.checked_add(rows) {
                Some(e) if e <= n_rows as u64 => e,
                _ => {
                    return Err(Error::format(
                        path,
                        place,
                        format!("{rows} rows from row {first} run past the store's {n_rows} rows"),
                    ))
                }
            };
            if let Some(j) = seen.insert(name, i) {
                return Err(Error::format(
                    path,
                    place,
                    format!("era name also used by era {j}"),
                ));
            }
            eras.push(EraEntry {
                name: name.to_string(),
                first_row: first as usize,
                n_rows: rows as usize,
            });
        }
        if next_row != n_rows as u64 {
            return Err(Error::format(
                path,
                section_name(SEC_ERA_TABLE),
                format!("eras cover {next_row} rows, the header says {n_rows}"),
            ));
        }

        // Row ids: validated here (small next to the features) so `id()` never fails.
        let ids = &secs[3];
        parse_strings(path, section_name(SEC_ROW_IDS), bytes_of(ids), n_rows)?;
        let id_head = (n_rows + 1) * 8;
        let id_offsets = (ids.offset, ids.offset + id_head);
        let id_bytes = (ids.offset + id_head, ids.offset + ids.len);

        let sec_range = |k: u32| {
            let s = &secs[k as usize - 1];
            (s.offset, s.offset + s.len)
        };
        let features = sec_range(SEC_FEATURES);
        let targets = sec_range(SEC_TARGETS);
        let era_stats = sec_range(SEC_ERA_STATS);
        let store = Store {
            path: path.to_path_buf(),
            version,
            n_rows,
            n_features,
            n_targets,
            feature_names,
            target_names,
            eras,
            data_checksum,
            features,
            targets,
            era_stats,
            id_offsets,
            id_bytes,
            mmap,
        };
        // The casts below must succeed for every era: check them once here.
        bytemuck::try_cast_slice::<u8, f32>(store.bytes(store.targets)).map_err(|e| {
            Error::format(
                path,
                section_name(SEC_TARGETS),
                format!("not castable: {e:?}"),
            )
        })?;
        bytemuck::try_cast_slice::<u8, u64>(store.bytes(store.era_stats)).map_err(|e| {
            Error::format(
                path,
                section_name(SEC_ERA_STATS),
                format!("not castable: {e:?}"),
            )
        })?;
        Ok(store)
    }

    fn bytes(&self, r: (usize, usize)) -> &[u8] {
        &self.mmap[r.0..r.1]
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn format_version(&self) -> u32 {
        self.version
    }
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    pub fn n_eras(&self) -> usize {
        self.eras.len()
    }
    pub fn n_features(&self) -> usize {
        self.n_features
    }
    pub fn n_targets(&self) -> usize {
        self.n_targets
    }
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }
    pub fn target_names(&self) -> &[String] {
        &self.target_names
    }
    /// The data checksum recorded in the header (checked by `verify`).
    pub fn data_checksum(&self) -> u64 {
        self.data_checksum
    }
    /// Index of the era called `name`.
    pub fn era_index(&self, name: &str) -> Option<usize> {
        self.eras.iter().position(|e| e.name == name)
    }
    /// Index of target `name`.
    pub fn target_index(&self, name: &str) -> Option<usize> {
        self.target_names.iter().position(|t| t == name)
    }

    /// All features, [rows, F] row-major.
    pub fn features(&self) -> &[i8] {
        bytemuck::cast_slice(self.bytes(self.features))
    }
    /// All targets, [rows, T] row-major.
    pub fn targets(&self) -> &[f32] {
        // castable: checked in open
        bytemuck::try_cast_slice(self.bytes(self.targets)).unwrap_or(&[])
    }
    fn stats(&self) -> &[u64] {
        bytemuck::try_cast_slice(self.bytes(self.era_stats)).unwrap_or(&[])
    }
    /// All row ids.
    pub fn ids(&self) -> Ids<'_> {
        let offsets: &[u64] = bytemuck::try_cast_slice(self.bytes(self.id_offsets)).unwrap_or(&[0]);
        Ids {
            offsets,
            bytes: self.bytes(self.id_bytes),
        }
    }
    /// Id of row `row` of the store.
    pub fn id(&self, row: usize) -> &str {
        self.ids().get(row)
    }

    /// Era `i` (panics if `i >= n_eras()`, like slice indexing).
    pub fn era(&self, i: usize) -> EraView<'_> {
        let e = &self.eras[i];
        let (f, t) = (self.n_features, self.n_targets);
        let (a, b) = (e.first_row, e.first_row + e.n_rows);
        let ids = self.ids();
        let st = &self.stats()[i * (1 + t)..(i + 1) * (1 + t)];
        EraView {
            name: &e.name,
            first_row: e.first_row,
            n_rows: e.n_rows,
            n_features: f,
            n_targets: t,
            features: &self.features()[a * f..b * f],
            targets: &self.targets()[a * t..b * t],
            ids: Ids {
                offsets: &ids.offsets[a..b + 1],
                bytes: ids.bytes,
            },
            missing_features: st[0],
            missing_targets: &st[1..],
        }
    }

    /// All eras in order.
    pub fn eras(&self) -> impl Iterator<Item = EraView<'_>> + '_ {
        (0..self.n_eras()).map(move |i| self.era(i))
    }

    /// Missing feature values in the whole store (from the era stats; no data scan).
    pub fn missing_features(&self) -> u64 {
        self.eras().map(|e| e.missing_features).sum()
    }
    /// Missing values per target in the whole store (from the era stats; no data scan).
    pub fn missing_targets(&self) -> Vec<u64> {
        let mut m = vec![0u64; self.n_targets];
        for e in self.eras() {
            for (a, b) in m.iter_mut().zip(e.missing_targets) {
                *a += b;
            }
        }
        m
    }

    /// Read every byte: the data checksum, feature codes (0..4 or `MISSING`), targets (no ±Inf),
    /// the era stats. The first problem found is returned, naming the section, row and column.
    pub fn verify(&self) -> Result<()> {
        let computed = checksum::hash(&self.mmap[HEADER_LEN..]);
        if computed != self.data_checksum {
            return Err(Error::format(
                &self.path,
                "data",
                format!(
                    "data checksum mismatch (stored {:016x}, computed {computed:016x}): the file is corrupt",
                    self.data_checksum
                ),
            ));
        }
        for (i, era) in self.eras().enumerate() {
            let (missing_f, bad) = count_codes(era.features);
            if bad > 0 {
                let k = era
                    .features
                    .iter()
                    .position(|v| !(MISSING..=4).contains(v))
                    .unwrap_or(0);
                let (r, c) = (k / era.n_features, k % era.n_features);
                return Err(Error::format(
                    &self.path,
                    format!(
                        "{}, row {} (era {}), column {}",
                        section_name(SEC_FEATURES),
                        era.first_row + r,
                        era.name,
                        self.feature_names[c]
                    ),
                    format!("feature value {} outside 0..4", era.features[k]),
                ));
            }
            let mut missing_t = vec![0u64; era.n_targets];
            for (k, &v) in era.targets.iter().enumerate() {
                let c = k % era.n_targets.max(1);
                if v.is_nan() {
                    missing_t[c] += 1;
                } else if v.is_infinite() {
                    return Err(Error::format(
                        &self.path,
                        format!(
                            "{}, row {} (era {}), column {}",
                            section_name(SEC_TARGETS),
                            era.first_row + k / era.n_targets,
                            era.name,
                            self.target_names[c]
                        ),
                        format!("target value {v}"),
                    ));
                }
            }
            if missing_f != era.missing_features || missing_t != era.missing_targets {
                return Err(Error::format(
                    &self.path,
                    format!("{}, era {i} ({})", section_name(SEC_ERA_STATS), era.name),
                    "missing-value counts do not match the data",
                ));
            }
        }
        Ok(())
    }
}

/// (missing values, values outside 0..4 that are not `MISSING`) in a feature slice. Branch-free so
/// that it vectorizes: this runs over every byte on write and on verify.
fn count_codes(features: &[i8]) -> (u64, u64) {
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

// ------------------------------------------------------------------------------------------------
// Writing

/// A path beside `path` for a temporary file (same directory, so the final rename is atomic).
pub fn temp_path(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    path.with_file_name(format!(".{name}.{tag}-{}.tmp", std::process::id()))
}

/// Writes a store era by era. Features stream straight into the output's temporary file, targets
/// into a second temporary file (appended at `finish`); ids and the era table stay in memory.
/// `finish` writes the header and renames the file into place; dropping an unfinished writer (or
/// any error) removes the temporary files, so nothing half-written is ever left at `path`.
pub struct StoreWriter {
    path: PathBuf,
    tmp: PathBuf,
    tgt_tmp: PathBuf,
    out: BufWriter<File>,
    tgt: BufWriter<File>,
    pos: u64,
    hasher: Hasher,
    feature_names: Vec<String>,
    target_names: Vec<String>,
    secs: [(u64, u64); N_SECTIONS],
    n_rows: u64,
    eras: Vec<EraEntry>,
    era_seen: HashMap<String, usize>,
    era_stats: Vec<u64>,
    id_bytes: Vec<u8>,
    id_offsets: Vec<u64>,
    /// hash(id) → first row with that hash; rows whose id shares a hash with a different id go
    /// to `id_overflow`.
    id_hash: HashMap<u64, u64>,
    id_overflow: HashMap<u64, Vec<u64>>,
    /// Set when a `push_era` failed half-way; the writer then refuses further work.
    poisoned: bool,
    finished: bool,
}

fn string_table(names: &[impl AsRef<str>]) -> Vec<u8> {
    let mut offs = Vec::with_capacity(names.len() + 1);
    let mut blob = Vec::new();
    offs.push(0u64);
    for n in names {
        blob.extend_from_slice(n.as_ref().as_bytes());
        offs.push(blob.len() as u64);
    }
    let mut out = Vec::with_capacity(offs.len() * 8 + blob.len());
    for o in offs {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.extend_from_slice(&blob);
    out
}

impl StoreWriter {
    pub fn create(
        path: &Path,
        feature_names: &[String],
        target_names: &[String],
    ) -> Result<StoreWriter> {
        let dup = |names: &[String], what: &str| -> Result<()> {
            let mut seen = std::collections::HashSet::new();
            for n in names {
                if !seen.insert(n.as_str()) {
                    return Err(Error::format(
                        path,
                        format!("{what} names"),
                        format!("{what} {n:?} is listed twice"),
                    ));
                }
            }
            Ok(())
        };
        dup(feature_names, "feature")?;
        dup(target_names, "target")?;
        let tmp = temp_path(path, "part");
        let tgt_tmp = temp_path(path, "targets");
        let out = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let tgt = match File::create(&tgt_tmp) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(&tgt_tmp, e));
            }
        };
        let mut w = StoreWriter {
            path: path.to_path_buf(),
            tmp,
            tgt_tmp,
            out: BufWriter::with_capacity(1 << 20, out),
            tgt: BufWriter::with_capacity(1 << 20, tgt),
            pos: 0,
            hasher: Hasher::new(),
            feature_names: feature_names.to_vec(),
            target_names: target_names.to_vec(),
            secs: [(0, 0); N_SECTIONS],
            n_rows: 0,
            eras: Vec::new(),
            era_seen: HashMap::new(),
            era_stats: Vec::new(),
            id_bytes: Vec::new(),
            id_offsets: vec![0],
            id_hash: HashMap::new(),
            id_overflow: HashMap::new(),
            poisoned: false,
            finished: false,
        };
        // placeholder header (not hashed), then the name sections, then the features start
        let zeros = [0u8; HEADER_LEN];
        w.out.write_all(&zeros).map_err(|e| Error::io(&w.tmp, e))?;
        w.pos = HEADER_LEN as u64;
        let fnames = string_table(feature_names);
        w.section(SEC_FEATURE_NAMES, &fnames)?;
        let tnames = string_table(target_names);
        w.section(SEC_TARGET_NAMES, &tnames)?;
        w.pad()?;
        w.secs[SEC_FEATURES as usize - 1].0 = w.pos;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|e| Error::io(&self.tmp, e))?;
        self.hasher.update(b);
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = (align_up(self.pos) - self.pos) as usize;
        self.write(&[0u8; ALIGN as usize][..n])
    }

    fn section(&mut self, kind: u32, b: &[u8]) -> Result<()> {
        self.pad()?;
        self.secs[kind as usize - 1] = (self.pos, b.len() as u64);
        self.write(b)
    }

    fn err(&self, place: String, msg: String) -> Error {
        Error::format(&self.path, place, msg)
    }

    /// Check that `id` is new; remember it as row `row`.
    fn add_id(&mut self, id: &str, row: u64, era: &str) -> Result<()> {
        let h = checksum::hash(id.as_bytes());
        fn id_at(w: &StoreWriter, r: u64) -> &[u8] {
            let (a, b) = (w.id_offsets[r as usize], w.id_offsets[r as usize + 1]);
            &w.id_bytes[a as usize..b as usize]
        }
        let mut clash = None;
        match self.id_hash.get(&h) {
            None => {
                self.id_hash.insert(h, row);
            }
            Some(&r) if id_at(self, r) == id.as_bytes() => clash = Some(r),
            Some(_) => {
                let others = self.id_overflow.get(&h).cloned().unwrap_or_default();
                clash = others
                    .into_iter()
                    .find(|&r| id_at(self, r) == id.as_bytes());
                if clash.is_none() {
                    self.id_overflow.entry(h).or_default().push(row);
                }
            }
        }
        if let Some(r) = clash {
            let first_era = self
                .eras
                .iter()
                .find(|e| (e.first_row as u64..(e.first_row + e.n_rows) as u64).contains(&r))
                .map(|e| e.name.clone())
                .unwrap_or_else(|| era.to_string());
            return Err(self.err(
                format!("row {} of era {era}", row - self.n_rows),
                format!(
                    "duplicate id {id:?} (already used by row {} of era {first_era})",
                    r - self.first_row_of(&first_era)
                ),
            ));
        }
        self.id_bytes.extend_from_slice(id.as_bytes());
        self.id_offsets.push(self.id_bytes.len() as u64);
        Ok(())
    }

    fn first_row_of(&self, era: &str) -> u64 {
        self.eras
            .iter()
            .find(|e| e.name == era)
            .map(|e| e.first_row as u64)
            .unwrap_or(self.n_rows)
    }

    /// Append one era: `ids` [n], `features` [n, F] (0..4 or `MISSING`), `targets` [n, T]
    /// (NaN = missing, ±Inf rejected). Era names must be unique (an era in two runs is an error).
    /// After an error the writer refuses further eras and `finish`: drop it (which removes its
    /// temporary files).
    pub fn push_era<S: AsRef<str>>(
        &mut self,
        name: &str,
        ids: &[S],
        features: &[i8],
        targets: &[f32],
    ) -> Result<()> {
        if self.poisoned {
            return Err(self.err(
                String::new(),
                "an earlier era failed; the store cannot be continued".into(),
            ));
        }
        let r = self.push_era_inner(name, ids, features, targets);
        self.poisoned = r.is_err();
        r
    }

    fn push_era_inner<S: AsRef<str>>(
        &mut self,
        name: &str,
        ids: &[S],
        features: &[i8],
        targets: &[f32],
    ) -> Result<()> {
        let n = ids.len();
        let (f, t) = (self.feature_names.len(), self.target_names.len());
        if features.len() != n * f || targets.len() != n * t {
            return Err(Error::shape(format!(
                "era {name}: {n} ids need {} feature values and {} target values, got {} and {}",
                n * f,
                n * t,
                features.len(),
                targets.len()
            )));
        }
        if let Some(&j) = self.era_seen.get(name) {
            return Err(self.err(
                format!("era {name}"),
                format!(
                    "era {name:?} appears again after era {:?}: rows of one era must be contiguous (its first run is era #{j})",
                    self.eras.last().map(|e| e.name.as_str()).unwrap_or("")
                ),
            ));
        }
        let (missing_f, bad) = count_codes(features);
        if bad > 0 {
            let k = features
                .iter()
                .position(|v| !(MISSING..=4).contains(v))
                .unwrap_or(0);
            return Err(self.err(
                format!(
                    "row {} of era {name}, column {}",
                    k / f,
                    self.feature_names[k % f]
                ),
                format!("feature value {} outside 0..4", features[k]),
            ));
        }
        let mut missing_t = vec![0u64; t];
        for (k, &v) in targets.iter().enumerate() {
            if v.is_nan() {
                missing_t[k % t] += 1;
            } else if v.is_infinite() {
                return Err(self.err(
                    format!(
                        "row {} of era {name}, column {}",
                        k / t,
                        self.target_names[k % t]
                    ),
                    format!("target value {v} (must be finite or NaN)"),
                ));
            }
        }
        let first = self.n_rows;
        for (r, id) in ids.iter().enumerate() {
            self.add_id(id.as_ref(), first + r as u64, name)?;
        }
        self.write(bytemuck::cast_slice(features))?;
        let tb: &[u8] = bytemuck::cast_slice(targets);
        self.tgt
            .write_all(tb)
            .map_err(|e| Error::io(&self.tgt_tmp, e))?;
        self.era_seen.insert(name.to_string(), self.eras.len());
        self.eras.push(EraEntry {
            name: name.to_string(),
            first_row: first as usize,
            n_rows: n,
        });
        self.era_stats.push(missing_f);
        self.era_stats.extend_from_slice(&missing_t);
        self.n_rows += n as u64;
        Ok(())
    }

    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }
    pub fn n_eras(&self) -> usize {
        self.eras.len()
    }

    /// Write the remaining sections and the header, then rename into place.
    pub fn finish(mut self) -> Result<()> {
        self.finish_inner()?;
        self.finished = true;
        Ok(())
    }

    fn finish_inner(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(self.err(
                String::new(),
                "an earlier era failed; the store was not written".into(),
            ));
        }
        let fstart = self.secs[SEC_FEATURES as usize - 1].0;
        self.secs[SEC_FEATURES as usize - 1].1 = self.pos - fstart;
        // targets: copy the temporary file in
        self.tgt.flush().map_err(|e| Error::io(&self.tgt_tmp, e))?;
        self.pad()?;
        let tstart = self.pos;
        let mut tf = File::open(&self.tgt_tmp).map_err(|e| Error::io(&self.tgt_tmp, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = tf.read(&mut buf).map_err(|e| Error::io(&self.tgt_tmp, e))?;
            if k == 0 {
                break;
            }
            self.write(&buf[..k])?;
        }
        self.secs[SEC_TARGETS as usize - 1] = (tstart, self.pos - tstart);
        // era table: records, then names
        let mut et = Vec::with_capacity(self.eras.len() * 16);
        for e in &self.eras {
            et.extend_from_slice(&(e.first_row as u64).to_le_bytes());
            et.extend_from_slice(&(e.n_rows as u64).to_le_bytes());
        }
        let names: Vec<&str> = self.eras.iter().map(|e| e.name.as_str()).collect();
        et.extend_from_slice(&string_table(&names));
        self.section(SEC_ERA_TABLE, &et)?;
        let stats: Vec<u8> = self
            .era_stats
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        self.section(SEC_ERA_STATS, &stats)?;
        // row ids: offsets then bytes
        self.pad()?;
        let istart = self.pos;
        let offs: Vec<u8> = self
            .id_offsets
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        self.write(&offs)?;
        let ids = std::mem::take(&mut self.id_bytes);
        self.write(&ids)?;
        self.secs[SEC_ROW_IDS as usize - 1] = (istart, self.pos - istart);
        self.pad()?;

        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(N_SECTIONS as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.n_rows.to_le_bytes());
        h[24..32].copy_from_slice(&(self.eras.len() as u64).to_le_bytes());
        h[32..40].copy_from_slice(&(self.feature_names.len() as u64).to_le_bytes());
        h[40..48].copy_from_slice(&(self.target_names.len() as u64).to_le_bytes());
        h[56..64].copy_from_slice(&self.hasher.finish().to_le_bytes());
        for (i, (off, len)) in self.secs.iter().enumerate() {
            let at = HEADER_FIXED + i * SECTION_ENTRY;
            h[at..at + 4].copy_from_slice(&(i as u32 + 1).to_le_bytes());
            h[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            h[at + 16..at + 24].copy_from_slice(&len.to_le_bytes());
        }
        let hc = header_checksum(&h);
        h[48..56].copy_from_slice(&hc.to_le_bytes());
        let tmp = self.tmp.clone();
        let io = |e| Error::io(&tmp, e);
        self.out.flush().map_err(io)?;
        let f = self.out.get_mut();
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.write_all(&h).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(())
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tgt_tmp);
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
