//! The correlation loss's host read-back (a leaf: the `Backend` trait names it).

/// What the correlation loss's forward reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CorrParts {
    /// mean Pearson correlation over the counted target columns (0 when none counts)
    pub corr: f32,
    /// K: how many target columns counted
    pub heads: f32,
}
