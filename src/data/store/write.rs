//! Writing: `StoreWriter` streams eras into a temporary file and renames it into place on
//! `finish`.

use super::format::*;
use crate::data::checksum::{self, Hasher};
use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
        // temporary files a killed writer (kill -9 during import) left beside the output
        let _ = crate::io::remove_stale_temps(path);
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

        let mut h = Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            n_sections: N_SECTIONS as u32,
            n_rows: self.n_rows,
            n_eras: self.eras.len() as u64,
            n_features: self.feature_names.len() as u64,
            n_targets: self.target_names.len() as u64,
            header_checksum: 0,
            data_checksum: self.hasher.finish(),
            sections: [SectionEntry::default(); N_SECTIONS],
        };
        for (i, (e, (off, len))) in h.sections.iter_mut().zip(&self.secs).enumerate() {
            e.kind = i as u32 + 1;
            e.offset = *off;
            e.len = *len;
        }
        h.header_checksum = h.checksum();
        let tmp = self.tmp.clone();
        let io = |e| Error::io(&tmp, e);
        self.out.flush().map_err(io)?;
        let f = self.out.get_mut();
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.write_all(h.bytes()).map_err(io)?;
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
