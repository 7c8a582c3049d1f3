//! Row-major A read in place with k deeper than one KC slice (the mapper's forward, x · Wᵀ): B is
//! packed whole and each MR-row panel of C runs through every slice while it sits in L1, instead of
//! every slice streaming all of C (5,000 × 128 at F 2,376). Each C tile gets the operations of
//! [`super::run_blocks`]' slice loop in the same order, so the product is bit for bit the same.

use super::{pack, tile, AMode, Block, Kernel, Prob, TileBuf};

/// Most values of B packed whole: 1.5 MiB, within one core's L2 (F 2,376 × d 128 is 1.2 MiB).
pub(super) const WHOLE_B_MAX: usize = 384 << 10;

/// Whether B is packed whole and the slices of k run inside each row panel ([`WHOLE_B_MAX`]).
pub(super) fn whole_b<K: Kernel>(p: &Prob, mode: AMode, b_in_place: bool) -> bool {
    mode == AMode::Rows
        && p.bpacked.is_none()
        && !b_in_place
        && p.k > K::KC
        && p.n <= K::NC
        && p.k * p.n.div_ceil(K::NR) * K::NR <= WHOLE_B_MAX
}

/// The product C = op(A)·op(B) (+ epilogue) for a problem [`whole_b`] accepts: every slice of B
/// packed into `bpack` at offset pc·ncp, then per MR-row panel all slices in order.
pub(super) fn run<K: Kernel>(
    p: &Prob,
    c: &mut [f32],
    ldc: usize,
    bpack: &mut [f32],
    apack: &[f32],
    tb: &mut TileBuf,
) {
    let (m, n, k) = (p.m, p.n, p.k);
    let ncp = n.div_ceil(K::NR) * K::NR;
    for pc in (0..k).step_by(K::KC) {
        pack::b(
            &mut bpack[pc * ncp..],
            &p.b,
            pc,
            K::KC.min(k - pc),
            0,
            n,
            K::NR,
        );
    }
    for ir in (0..m).step_by(K::MR) {
        for pc in (0..k).step_by(K::KC) {
            let kc = K::KC.min(k - pc);
            let blk = Block {
                p,
                bpack: &bpack[pc * ncp..],
                apack,
                mode: AMode::Rows,
                b_in_place: false,
                ic: 0,
                mc: m,
                jc: 0,
                nc: n,
                pc,
                kc,
                first: pc == 0,
                last: pc + kc == k,
            };
            for jr in (0..n).step_by(K::NR) {
                tile::<K>(&blk, ir, jr, c, ldc, tb);
            }
        }
    }
}
