//! Which gates stay open (a leaf: the `Backend` trait names [`GateSelect`]).

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GateSelect {
    /// keep g ≥ τ (τ = 0 keeps everything)
    Threshold(f32),
    /// keep the k largest gates
    TopK(usize),
}

/// keep[f] = 1.0 for the selected gates, 0.0 for the others (SPEC §3).
pub fn select_gates(keep: &mut [f32], g: &[f32], select: GateSelect) {
    match select {
        GateSelect::Threshold(tau) => {
            for (kv, &gv) in keep.iter_mut().zip(g) {
                *kv = if gv >= tau { 1.0 } else { 0.0 };
            }
        }
        GateSelect::TopK(topk) => {
            let mut order: Vec<usize> = (0..g.len()).collect();
            // largest first; equal gates keep index order (stable sort), so ties go to the lower index
            order.sort_by(|&i, &j| g[j].total_cmp(&g[i]));
            keep.fill(0.0);
            for &i in order.iter().take(topk) {
                keep[i] = 1.0;
            }
        }
    }
}
