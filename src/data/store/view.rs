//! Borrowed views into an open [`super::Store`]: one era's rows, and the row ids of a run.

/// The ids of a run of rows: offsets into a UTF-8 blob validated at open.
#[derive(Clone, Copy, Debug)]
pub struct Ids<'a> {
    pub(super) offsets: &'a [u64],
    pub(super) bytes: &'a [u8],
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
    /// Where the store keeps this era's feature medians once found (None: found at every
    /// imputation).
    pub medians: Option<&'a std::sync::OnceLock<Vec<u8>>>,
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
