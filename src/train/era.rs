//! One era as model inputs: preprocessed features in the model's feature order, targets in the
//! model's target order, and a row mask.

use crate::data::store::Store;
use crate::device::Backend;
use crate::model::EraInputs;
use crate::ops::codes;
use crate::ops::gate::col_sums;
use crate::ops::gemm::Simd;
use crate::ops::par;
use crate::tape::{Tape, T};
use crate::{Error, Result};

/// Which store column feeds each model feature / target.
#[derive(Clone, Debug)]
pub struct ColumnMap {
    pub features: Option<Vec<usize>>,
    pub targets: Vec<Option<usize>>,
    pub n_store_features: usize,
    pub n_store_targets: usize,
}

impl ColumnMap {
    pub fn identity(store: &Store) -> Self {
        ColumnMap {
            features: None,
            targets: (0..store.n_targets()).map(Some).collect(),
            n_store_features: store.n_features(),
            n_store_targets: store.n_targets(),
        }
    }

    /// Maps a model's features and targets onto a store's columns by name. Every model feature
    /// must be in the store; a model target missing from the store reads as NaN (e.g. live data).
    pub fn for_model(store: &Store, features: &[String], targets: &[String]) -> Result<Self> {
        let sf = store.feature_names();
        let mut idx = Vec::with_capacity(features.len());
        let mut missing = Vec::new();
        for f in features {
            match sf.iter().position(|s| s == f) {
                Some(i) => idx.push(i),
                None => missing.push(f.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(Error::format(
                store.path(),
                "features",
                format!(
                    "the model needs {} features; {} of them are not in this store (first: {}); the store has {} features",
                    features.len(),
                    missing.len(),
                    missing.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                    sf.len()
                ),
            ));
        }
        let identity = idx.len() == sf.len() && idx.iter().enumerate().all(|(i, &j)| i == j);
        let st = store.target_names();
        Ok(ColumnMap {
            features: if identity { None } else { Some(idx) },
            targets: targets
                .iter()
                .map(|t| st.iter().position(|s| s == t))
                .collect(),
            n_store_features: sf.len(),
            n_store_targets: st.len(),
        })
    }
}

/// A loaded era on the host.
pub struct EraBatch {
    pub name: String,
    pub n: usize,
    pub f: usize,
    pub t: usize,
    /// [n, f] preprocessed features
    pub x: Vec<f32>,
    /// The imputed codes c behind `x` (x = (c − 2) / 2), packed four to a word (src/ops/codes):
    /// what crosses to a device, a quarter of x's bytes. None where x is not of that form (x is
    /// uploaded then). Whatever changes x changes these too (src/train/noise.rs).
    pub codes: Option<Vec<f32>>,
    /// [n, t] targets, NaN = missing
    pub y: Vec<f32>,
    /// [n] 1.0 for real rows
    pub mask: Vec<f32>,
    /// [f] Σ_i x_if over the real rows in row order (f64), when known: found while x is written
    /// ([`EraBatch::from_codes`], row sampling) so the step's gate and the era statistics need not
    /// read x for them again. None wherever x or the mask changes otherwise (feature noise).
    pub col_sums: Option<Vec<f64>>,
    /// [2F] the era statistics ([`EraBatch::context_stats`]) when found ahead, on the loader
    /// thread ([`EraBatch::keep_context_stats`]), the last thing done to the batch there; None
    /// wherever the codes, x or the mask change (row sampling, feature noise).
    pub stats: Option<Vec<f32>>,
}

impl EraBatch {
    pub fn load(store: &Store, i: usize, map: &ColumnMap) -> Result<Self> {
        let mut b = Self::load_codes(store, i, map)?;
        b.make_x();
        Ok(b)
    }

    /// [`EraBatch::load`] but for x, which stays empty until [`EraBatch::make_x`]: the training
    /// loop first keeps the rows that row sampling draws (half an era by default), so the other
    /// rows are never made into f32 and then dropped.
    pub fn load_codes(store: &Store, i: usize, map: &ColumnMap) -> Result<Self> {
        Self::load_codes_rows(store, i, map, None)
    }

    /// [`EraBatch::load_codes`] of the era's rows `rows` only, in that order (None: every row;
    /// indices below the era's row count): the rows that row sampling keeps, drawn before the era
    /// loads, so that the rows it drops are never imputed or copied.
    pub fn load_codes_rows(
        store: &Store,
        i: usize,
        map: &ColumnMap,
        rows: Option<&[usize]>,
    ) -> Result<Self> {
        let era = store.era(i);
        let n = rows.map_or(era.n_rows, |r| r.len());
        let row_at = |k: usize| rows.map_or(k, |r| r[k]);
        let fs = map.n_store_features;
        let packed = match &map.features {
            // imputed straight into the packed buffer
            None => codes::pack_with(n * fs, |b| {
                crate::data::batch::impute_rows_into(&era, rows, b)
            }),
            Some(idx) => {
                let mut c_all = Vec::new();
                crate::data::batch::imputed_features(&era, &mut c_all);
                let mut c = Vec::with_capacity(n * idx.len());
                for r in (0..n).map(row_at) {
                    let row = &c_all[r * fs..(r + 1) * fs];
                    c.extend(idx.iter().map(|&j| row[j]));
                }
                codes::pack(&c)
            }
        };
        let ts = map.n_store_targets;
        let t = map.targets.len();
        let mut y = vec![f32::NAN; n * t];
        for (k, r) in (0..n).map(row_at).enumerate() {
            for (kt, src) in map.targets.iter().enumerate() {
                if let Some(j) = src {
                    y[k * t + kt] = era.targets[r * ts + j];
                }
            }
        }
        let name = era.name.to_string();
        // the era is in f32 now: its mapped bytes need not stay resident (a 2 GB store would
        // otherwise end the epoch 2 GB resident)
        store.release_era(i);
        let f = map.features.as_ref().map_or(fs, |v| v.len());
        Ok(EraBatch::codes_only(name, n, f, t, packed, y))
    }

    /// An era of `n` real rows from its imputed codes `[n, f]` (0..4), packed, and targets
    /// `[n, t]`, x not made yet.
    fn codes_only(
        name: String,
        n: usize,
        f: usize,
        t: usize,
        packed: Vec<f32>,
        y: Vec<f32>,
    ) -> Self {
        EraBatch {
            name,
            n,
            f,
            t,
            x: Vec::new(),
            codes: Some(packed),
            y,
            mask: vec![1.0; n],
            col_sums: None,
            stats: None,
        }
    }

    /// An era of `n` real rows from its imputed codes `[n, f]` (0..4) and targets `[n, t]`: x =
    /// (c − 2) / 2, as `crate::data::batch::preprocess_features` gives, and the packed codes.
    pub fn from_codes(
        name: String,
        n: usize,
        f: usize,
        t: usize,
        codes: &[u8],
        y: Vec<f32>,
    ) -> Self {
        let mut b = Self::codes_only(name, n, f, t, codes::pack(codes), y);
        b.make_x();
        b
    }

    /// Makes x = (c − 2) / 2 [n, f] from the codes, with its column sums over the real rows, when
    /// it is not made yet ([`EraBatch::load_codes`]); does nothing otherwise.
    pub fn make_x(&mut self) {
        let (n, f) = (self.n, self.f);
        let Some(packed) = &self.codes else {
            return;
        };
        if !self.x.is_empty() || n * f == 0 {
            return;
        }
        let codes = &crate::ops::codes::bytes(packed)[..n * f];
        let mask = &self.mask[..n];
        // from the CPU's buffer pool, where the training step hands x back (its tape keeps the
        // buffer): a fresh 48 MB at 5,000 × 2,376 costs the loader ~12,000 page faults an era
        // (written once, in order: a fresh buffer is not filled first)
        let mut x = crate::device::cpu_pool::take_empty(n * f);
        let mut sums = vec![0f64; f];
        // at the machine's SIMD width (columns are independent: the same bits at any width)
        Simd::detect().run(
            #[inline(always)]
            || {
                for (cr, &m) in codes.chunks_exact(f).zip(mask) {
                    let row = x.len();
                    x.extend(cr.iter().map(|&c| (f32::from(c) - 2.0) * 0.5));
                    if m != 0.0 {
                        for (s, &v) in sums.iter_mut().zip(&x[row..]) {
                            *s += v as f64;
                        }
                    }
                }
            },
        );
        self.x = x;
        self.col_sums = Some(sums);
    }

    /// The era statistics s = [μ_1..μ_F, σ_1..σ_F] of docs/model.md over the real rows (zeros for
    /// an era without real rows). From the codes where the era has them, exactly: with S₁ = Σ (c −
    /// 2) and S₂ = Σ (c − 2)² over the N real rows (integers, [`codes::col_moments`]), μ = S₁ / 2N
    /// and σ² = (N·S₂ − S₁²) / 4N², each rounded once (a zero that feature noise negated in x
    /// counts alike). Else from x: two passes in f64, in row order.
    pub fn context_stats(&self) -> Vec<f32> {
        match &self.stats {
            Some(s) => s.clone(),
            None => self.find_context_stats(par::threads()),
        }
    }

    /// Finds [`EraBatch::context_stats`] now and keeps them with the batch: the training loop's
    /// loader thread does, for a model with an era context, so that the step does not (~1 ms a
    /// step at 2,500 sampled rows × 2,376 features, 4–5% of the default model's step), on its
    /// own thread: the step's ops have the worker pool (one that found it busy would start threads).
    pub fn keep_context_stats(&mut self) {
        self.stats = Some(self.find_context_stats(1));
    }

    /// [`EraBatch::context_stats`], the codes' sums split over at most `threads` threads.
    fn find_context_stats(&self, threads: usize) -> Vec<f32> {
        let (n, f) = (self.n, self.f);
        let mask = &self.mask[..n];
        let rows = mask.iter().filter(|&&m| m != 0.0).count();
        let mut out = vec![0f32; 2 * f];
        if rows == 0 || f == 0 {
            return out;
        }
        if let Some(packed) = &self.codes {
            let cs = &codes::bytes(packed)[..n * f];
            let (sc, sq) = codes::col_moments_on(cs, mask, n, f, threads);
            let nr = rows as i128;
            for j in 0..f {
                // Σ (c − 2) = Σc − 2N, Σ (c − 2)² = Σc² − 4Σc + 4N
                let (c1, c2) = (i128::from(sc[j]), i128::from(sq[j]));
                let s1 = c1 - 2 * nr;
                let s2 = c2 - 4 * c1 + 4 * nr;
                out[j] = (s1 as f64 * 0.5 / rows as f64) as f32;
                let var = (nr * s2 - s1 * s1) as f64 / (4 * nr * nr) as f64;
                out[f + j] = var.sqrt() as f32;
            }
            return out;
        }
        let mut mean = vec![0f64; f];
        match &self.col_sums {
            Some(s) => mean.copy_from_slice(&s[..f]),
            None => self.x_col_sums(&mut mean, &vec![0f64; f], |v, _| v),
        }
        for m in &mut mean {
            *m /= rows as f64;
        }
        let mut var = vec![0f64; f];
        self.x_col_sums(&mut var, &mean, |v, m| (v - m) * (v - m));
        for j in 0..f {
            out[j] = mean[j] as f32;
            out[f + j] = (var[j] / rows as f64).sqrt() as f32;
        }
        out
    }

    /// out[j] = Σ over the real rows, in row order, in f64, of term(x_ij, aux[j]): per column,
    /// split over threads by columns and at SIMD width (the gate's helper: the same bits
    /// whatever either is).
    fn x_col_sums(&self, out: &mut [f64], aux: &[f64], term: impl Fn(f64, f64) -> f64 + Sync) {
        let (n, f, mask) = (self.n, self.f, &self.mask[..self.n]);
        let vals = &self.x[..n * f];
        col_sums(
            out,
            n,
            f,
            #[inline(always)]
            |i, f0, part| {
                if mask[i] != 0.0 {
                    let w = part.len();
                    let row = vals[i * f + f0..][..w].iter().zip(&aux[f0..][..w]);
                    for (s, (&v, &a)) in part.iter_mut().zip(row) {
                        *s += term(v as f64, a);
                    }
                }
            },
        )
    }

    /// Targets present on real rows.
    pub fn present_targets(&self) -> usize {
        self.y.iter().filter(|v| !v.is_nan()).count()
    }

    pub fn to_tape<B: Backend>(&self, dev: &B, tape: &mut Tape<B>) -> Result<EraInputs> {
        let x = match &self.codes {
            Some(packed) if dev.prefers_codes() => {
                tape.input_codes(dev, packed, self.n * self.f)?
            }
            Some(packed) if self.x.is_empty() => tape.input_owned(
                dev,
                crate::ops::codes::fwd_checked(packed, self.n * self.f)?,
            )?,
            _ => tape.input(dev, &self.x)?,
        };
        let codes = match &self.codes {
            Some(packed) if dev.linear_bwd_reads_codes() => Some(tape.input(dev, packed)?),
            _ => None,
        };
        self.rest_to_tape(dev, tape, x, codes)
    }

    /// [`EraBatch::to_tape`] of an era the caller is done with: x moves onto the tape rather than
    /// being copied there when the device takes it as f32 (the CPU: one copy of [n, f] less a
    /// step, 48 MB at 5,000 × 2,376), leaving `self.x` empty; so do its codes where the device's
    /// linear maps read them (leaving `self.codes` None).
    pub fn move_to_tape<B: Backend>(&mut self, dev: &B, tape: &mut Tape<B>) -> Result<EraInputs> {
        if !dev.prefers_codes() {
            self.make_x();
        }
        let x = match &self.codes {
            Some(packed) if dev.prefers_codes() => {
                tape.input_codes(dev, packed, self.n * self.f)?
            }
            _ => tape.input_owned(dev, std::mem::take(&mut self.x))?,
        };
        let codes = if dev.linear_bwd_reads_codes() {
            self.codes
                .take()
                .map(|c| tape.input_owned(dev, c))
                .transpose()?
        } else {
            None
        };
        self.rest_to_tape(dev, tape, x, codes)
    }

    fn rest_to_tape<B: Backend>(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        x: T,
        codes: Option<T>,
    ) -> Result<EraInputs> {
        Ok(EraInputs {
            x,
            codes,
            mask: tape.input(dev, &self.mask)?,
            y: tape.input(dev, &self.y)?,
            n: self.n,
            ctx: None,
            col_sums: self.col_sums.clone(),
        })
    }
}

/// Fisher–Yates shuffle driven by `rng` (plain training and walk-forward share it).
pub fn shuffle(order: &mut [usize], rng: &mut crate::rng::Rng) {
    for i in (1..order.len()).rev() {
        let j = (rng.next_u32() as usize) % (i + 1);
        order.swap(i, j);
    }
}

/// True when the store has a value for the model's target 0 somewhere (it can score validation).
pub fn has_target0(store: &Store, map: &ColumnMap) -> bool {
    match map.targets.first().copied().flatten() {
        Some(j) => store
            .missing_targets()
            .get(j)
            .is_some_and(|&m| (m as usize) < store.n_rows()),
        None => false,
    }
}

/// The eras a run trains on: one store, or several read as one sequence in the order given (the
/// refit after early stopping trains on the training and then the validation eras). Era `i` of
/// the source is era `i − offset` of the store that holds it.
pub struct EraSource<'a> {
    /// the run's feature and target names (every part is read in this column order)
    features: Vec<String>,
    targets: Vec<String>,
    parts: Vec<(&'a Store, ColumnMap)>,
    /// first source era of each part
    offsets: Vec<usize>,
    total: usize,
}

impl<'a> EraSource<'a> {
    /// The eras of one store, read with its own columns.
    pub fn one(store: &'a Store) -> Self {
        EraSource {
            features: store.feature_names().to_vec(),
            targets: store.target_names().to_vec(),
            parts: vec![(store, ColumnMap::identity(store))],
            offsets: vec![0],
            total: store.n_eras(),
        }
    }

    /// The eras of `store` read as the given features and targets, mapped by name (a model's
    /// columns: every feature must be in the store; a missing target reads as NaN).
    pub fn mapped(store: &'a Store, features: &[String], targets: &[String]) -> Result<Self> {
        Ok(EraSource {
            features: features.to_vec(),
            targets: targets.to_vec(),
            parts: vec![(store, ColumnMap::for_model(store, features, targets)?)],
            offsets: vec![0],
            total: store.n_eras(),
        })
    }

    /// Appends the eras of `store`, its columns mapped by name onto the run's features and
    /// targets (every feature must be present; a missing target reads as NaN).
    pub fn then(mut self, store: &'a Store) -> Result<Self> {
        let map = ColumnMap::for_model(store, &self.features, &self.targets)?;
        self.offsets.push(self.total);
        self.total += store.n_eras();
        self.parts.push((store, map));
        Ok(self)
    }

    /// The first store (named in errors).
    pub fn first(&self) -> &'a Store {
        self.parts[0].0
    }

    /// The run's feature names (the first store's, or those given to [`EraSource::mapped`]).
    pub fn feature_names(&self) -> &[String] {
        &self.features
    }

    pub fn target_names(&self) -> &[String] {
        &self.targets
    }

    pub fn n_eras(&self) -> usize {
        self.total
    }

    /// The stores, in order.
    pub fn stores(&self) -> impl Iterator<Item = &'a Store> + '_ {
        self.parts.iter().map(|(s, _)| *s)
    }

    /// (store, its column map, the era's index in that store) of source era `i`.
    fn locate(&self, i: usize) -> Result<(&'a Store, &ColumnMap, usize)> {
        if i >= self.total {
            return Err(Error::usage(format!(
                "era {i} of a training source with {} eras",
                self.total
            )));
        }
        let p = self.offsets.partition_point(|&o| o <= i) - 1;
        let (s, m) = &self.parts[p];
        Ok((s, m, i - self.offsets[p]))
    }

    pub fn load(&self, i: usize) -> Result<EraBatch> {
        let (s, m, j) = self.locate(i)?;
        EraBatch::load(s, j, m)
    }

    /// [`EraSource::load`] without x ([`EraBatch::load_codes`]).
    pub fn load_codes(&self, i: usize) -> Result<EraBatch> {
        self.load_codes_rows(i, None)
    }

    /// [`EraSource::load_codes`] of the era's rows `rows` only ([`EraBatch::load_codes_rows`]).
    pub fn load_codes_rows(&self, i: usize, rows: Option<&[usize]>) -> Result<EraBatch> {
        let (s, m, j) = self.locate(i)?;
        EraBatch::load_codes_rows(s, j, m, rows)
    }

    /// Rows of source era `i`, and whether one of them has a value of one of the run's targets
    /// (read from the targets themselves, as [`EraBatch::present_targets`] counts them).
    pub fn rows_and_targets(&self, i: usize) -> Result<(usize, bool)> {
        let (s, m, j) = self.locate(i)?;
        let era = s.era(j);
        let ts = m.n_store_targets;
        let present = (0..era.n_rows).any(|r| {
            m.targets
                .iter()
                .flatten()
                .any(|&k| !era.targets[r * ts + k].is_nan())
        });
        Ok((era.n_rows, present))
    }

    /// True when source era `i` has rows and a value of one of the run's targets.
    pub fn learnable(&self, i: usize) -> bool {
        let Ok((s, m, j)) = self.locate(i) else {
            return false;
        };
        let era = s.era(j);
        era.n_rows > 0
            && m.targets.iter().flatten().any(|&k| {
                era.missing_targets
                    .get(k)
                    .is_some_and(|&c| (c as usize) < era.n_rows)
            })
    }

    /// One number for all the parts' data checksums (`--resume` compares it).
    pub fn data_checksum(&self) -> u64 {
        match self.parts.as_slice() {
            [(s, _)] => s.data_checksum(),
            parts => parts.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, (s, _)| {
                (h ^ s.data_checksum()).wrapping_mul(0x0000_0100_0000_01B3)
            }),
        }
    }

    /// Like [`with_prefetch`] over the source's eras, with `workers` eras loading at once
    /// ([`prefetch_workers`]), each prepared on its loader thread, off the training step's: an
    /// era without rows or without a target value is `None` (the body skips it); any other loads
    /// the rows `rows(era index, its row count)` names (None: all of them; the training loop's
    /// row sampling), without x ([`EraBatch::load_codes_rows`]), and passes through `prep(era
    /// index, batch)` (feature noise, and x made where the step's device reads it: a device that
    /// takes the codes never needs it).
    pub fn with_prefetch<R>(
        &self,
        order: &[usize],
        workers: usize,
        rows: impl Fn(usize, usize) -> Option<Vec<usize>> + Sync,
        prep: impl Fn(usize, EraBatch) -> EraBatch + Sync,
        body: impl FnOnce(&mut dyn Iterator<Item = (usize, Result<Option<EraBatch>>)>) -> R,
    ) -> R {
        let load = |i| -> Result<Option<EraBatch>> {
            let (n, targets) = self.rows_and_targets(i)?;
            if n == 0 || !targets {
                return Ok(None);
            }
            let kept = rows(i, n);
            Ok(Some(prep(i, self.load_codes_rows(i, kept.as_deref())?)))
        };
        prefetch(load, order, workers, body)
    }
}

/// How many eras load at once ahead of the model (training, validation, `predict`). Loading an era
/// takes 2–3 ms at 5,000 rows × 705 features on one core (`cargo bench --bench store`: impute and
/// codes, plus x where the device reads it): far less than a CPU step, so one loader there, but
/// about a GPU step (1.65 ms on an H200), so a device that takes eras as codes gets up to 4
/// loaders (half the cores, at least 1).
/// `ERAENGINE_LOADERS=n` (a whole number ≥ 1) sets the count; any other value is an error.
pub fn prefetch_workers(gpu: bool) -> Result<usize> {
    loaders_from(std::env::var("ERAENGINE_LOADERS").ok().as_deref(), gpu)
}

/// [`prefetch_workers`] with the variable's value given.
pub fn loaders_from(value: Option<&str>, gpu: bool) -> Result<usize> {
    match value {
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Error::usage(format!(
                "ERAENGINE_LOADERS={v:?}: expected a whole number of era loader threads, at least 1"
            ))),
        },
        None if gpu => Ok((crate::ops::par::threads() / 2).clamp(1, 4)),
        None => Ok(1),
    }
}

/// Runs `body` over the eras of `order`, each loaded (read from the store's map and converted from
/// int8) on `workers` loader threads ahead of it, so reading the store overlaps the training step
/// instead of stalling it. `body` gets `(era index, its batch)` in `order`'s order, whatever order
/// the loaders finish in (a batch is the same whichever thread loads it); it may stop early (the
/// loaders then stop at their next era). At most 2 × `workers` batches exist ahead of the body.
/// `stats`: the loaders also find each era's statistics (for a model with an era context:
/// [`EraBatch::keep_context_stats`]).
pub fn with_prefetch<R>(
    store: &Store,
    map: &ColumnMap,
    order: &[usize],
    workers: usize,
    stats: bool,
    body: impl FnOnce(&mut dyn Iterator<Item = (usize, Result<EraBatch>)>) -> R,
) -> R {
    let load = |i| {
        let mut b = EraBatch::load(store, i, map)?;
        if stats {
            b.keep_context_stats();
        }
        Ok(b)
    };
    prefetch(load, order, workers, body)
}

/// [`with_prefetch`] with any loader.
fn prefetch<T: Send, R>(
    load: impl Fn(usize) -> Result<T> + Sync,
    order: &[usize],
    workers: usize,
    body: impl FnOnce(&mut dyn Iterator<Item = (usize, Result<T>)>) -> R,
) -> R {
    let workers = workers.clamp(1, order.len().max(1));
    std::thread::scope(|s| {
        // loader w takes positions w, w + workers, w + 2·workers, ... and hands each over through
        // its own one-slot channel, so the body reads them back in order by taking the channels in
        // turn: no reordering, and each loader holds at most one batch in its channel and one in
        // the making
        let mut rxs = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            rxs.push(rx);
            let load = &load;
            s.spawn(move || {
                for pos in (w..order.len()).step_by(workers) {
                    let ei = order[pos];
                    // a closed channel means the body stopped early: stop loading
                    if tx.send((ei, load(ei))).is_err() {
                        return;
                    }
                }
            });
        }
        let mut pos = 0usize;
        let mut eras = std::iter::from_fn(move || {
            let item = rxs[pos % workers].recv().ok()?;
            pos += 1;
            Some(item)
        });
        body(&mut eras)
        // `eras` (with the receivers) is dropped here, before the scope joins the loaders: one
        // blocked on its send gets an error and stops
    })
}
