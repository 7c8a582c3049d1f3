//! The loss's parts as read back to the host (a leaf: the `Backend` trait returns it).

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    pub loss: f32,
    pub mse: f32,
    pub sparsity: f32,
    /// Σ t: how many targets were scored
    pub count: f32,
    /// the orthogonal-embedding penalty P = ‖C − I‖²_F / d² (unweighted; `loss` holds
    /// `ortho_weight · P`), 0 when the loss is off (src/ops/ortho_loss)
    pub ortho: f32,
}
