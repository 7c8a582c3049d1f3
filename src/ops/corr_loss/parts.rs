//! The correlation loss's host read-back (a leaf: the `Backend` trait names it).

/// What the correlation loss's forward reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CorrParts {
    /// mean Pearson correlation over the counted target columns (0 when none counts)
    pub corr: f32,
    /// K: how many target columns counted
    pub heads: f32,
}

impl CorrParts {
    /// From the downloaded parts tensor of `Tape::corr_loss` ([corr, K]).
    pub fn from_host(v: &[f32]) -> crate::Result<Self> {
        match v {
            [corr, heads, ..] => Ok(CorrParts {
                corr: *corr,
                heads: *heads,
            }),
            _ => Err(crate::Error::device(format!(
                "corr_loss parts: {} values read back, 2 expected",
                v.len()
            ))),
        }
    }
}
