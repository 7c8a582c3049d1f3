//! Reading: `Store` (open, validate the small sections, views of eras) and `Store::verify`.

use super::format::*;
use super::view::{EraView, Ids};
use crate::data::checksum;
use crate::{Error, Result};
use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

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
    /// Per era, its features' medians once an imputation has found them
    /// ([`crate::data::batch::impute_into`]): the era's bytes cannot change while the store is
    /// open, so every later load of the era (each epoch) imputes without counting again.
    medians: Vec<std::sync::OnceLock<Vec<u8>>>,
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
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::format(
                path,
                "",
                "is a directory; expected an era store file (written by `eraengine import` or `synth`)",
            ));
        }
        if !meta.is_file() {
            return Err(Error::format(
                path,
                "",
                "not a regular file (a device or FIFO); expected an era store file",
            ));
        }
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
        let hd = Header::read(b);
        let version = hd.version;
        if version != FORMAT_VERSION {
            return Err(Error::format(
                path,
                "header",
                format!("format version {version}; this eraengine reads version {FORMAT_VERSION}"),
            ));
        }
        let stored = hd.header_checksum;
        let computed = hd.checksum();
        if stored != computed {
            return Err(Error::format(
                path,
                "header",
                format!("header checksum mismatch (stored {stored:016x}, computed {computed:016x}): the header or section table is corrupt"),
            ));
        }
        let n_sections = hd.n_sections as usize;
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
        let n_rows_u = hd.n_rows;
        let n_eras_u = hd.n_eras;
        let n_features_u = hd.n_features;
        let n_targets_u = hd.n_targets;
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
        let data_checksum = hd.data_checksum;

        let mut secs = Vec::with_capacity(N_SECTIONS);
        for i in 0..N_SECTIONS {
            let entry = hd.sections[i];
            let kind = entry.kind;
            let want = i as u32 + 1;
            let place = format!("section table entry {i}");
            if kind != want {
                return Err(Error::format(
                    path,
                    place,
                    format!("kind {kind}, expected {want} ({})", section_name(want)),
                ));
            }
            let offset = entry.offset;
            let len = entry.len;
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
        let medians = (0..eras.len())
            .map(|_| std::sync::OnceLock::new())
            .collect();
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
            medians,
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
            medians: self.medians.get(i),
        }
    }

    /// Hands era `i`'s feature and target pages back to the OS: once an era has been converted
    /// to f32, its bytes are not needed until the next epoch, and the mapped pages would otherwise
    /// stay in this process's resident memory until the whole store is (a 2 GB store, 2 GB of
    /// RSS). The page cache keeps them, so reading the era again costs no disk read while memory
    /// is plentiful. Does nothing for an `i` out of range.
    pub fn release_era(&self, i: usize) {
        let Some(e) = self.eras.get(i) else {
            return;
        };
        let (f, t) = (self.n_features, self.n_targets);
        let (a, b) = (e.first_row, e.first_row + e.n_rows);
        self.release(self.features.0 + a * f, self.features.0 + b * f);
        self.release(self.targets.0 + 4 * a * t, self.targets.0 + 4 * b * t);
    }

    /// madvise(DONTNEED) over the whole pages inside bytes [start, end) of the map (a page the
    /// range only partly covers is kept). Advice only: a failure changes nothing and is ignored.
    fn release(&self, start: usize, end: usize) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let base = self.mmap.as_ptr() as usize;
            let first = (base + start).next_multiple_of(PAGE) - base;
            let last = (base + end.min(self.mmap.len())) / PAGE * PAGE - base;
            if first < last {
                // SAFETY: the map is a read-only, shared mapping of the store file (`Mmap::map`),
                // and the store must not be modified while open (see `open`). For such a mapping
                // MADV_DONTNEED only drops this process's page-table entries: the next access
                // reads the same bytes back from the page cache or the file, so every slice
                // borrowed from the map keeps seeing the same contents. [first, last) lies in the
                // map (end is clamped to its length); where the system page is larger than PAGE,
                // memmap2 widens the range to whole pages, which is harmless for the same reason.
                let _ = unsafe {
                    self.mmap.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        last - first,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = (start, end);
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

    /// Opens a store and, unless `verify` is false, checks its data checksum
    /// ([`Store::verify_checksum`]) so that a flipped byte is found before anything trains or
    /// predicts on it.
    pub fn open_checked(path: &Path, verify: bool) -> Result<Store> {
        let s = Store::open(path)?;
        if verify {
            s.verify_checksum()?;
        }
        Ok(s)
    }

    /// Hashes every data byte and compares with the header's data checksum (one sequential read
    /// of the file; well under a second per GB).
    pub fn verify_checksum(&self) -> Result<()> {
        // in 64 MiB pieces, each handed back to the OS once hashed, so reading a store of any size
        // never holds more than a piece of it resident
        const PIECE: usize = 64 << 20;
        let mut h = checksum::Hasher::new();
        let mut at = HEADER_LEN.min(self.mmap.len());
        while at < self.mmap.len() {
            let end = (at + PIECE).min(self.mmap.len());
            h.update(&self.mmap[at..end]);
            self.release(at, end);
            at = end;
        }
        let computed = h.finish();
        if computed != self.data_checksum {
            return Err(Error::format(
                &self.path,
                "data",
                format!(
                    "data checksum mismatch (stored {:016x}, computed {computed:016x}): the file is corrupt; re-import it (or pass --no-verify to use it anyway)",
                    self.data_checksum
                ),
            ));
        }
        Ok(())
    }

    /// Read every byte: the data checksum, feature codes (0..4 or `MISSING`), targets (no ±Inf),
    /// the era stats. The first problem found is returned, naming the section, row and column.
    pub fn verify(&self) -> Result<()> {
        self.verify_checksum()?;
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
