// Era codes to model inputs (src/ops/codes): an era crosses to the device as its imputed feature
// codes, one byte each (0..4), a quarter of the f32 bytes, and becomes x = (c − 2) / 2 here, exactly
// the values the host's preprocessing gives (src/data/batch.rs).
//   codes_fwd_f32: out[e] = ((float)codes[e] − 2) · 0.5 for e < n, grid-stride; `codes` is the
//     byte view of the uploaded buffer (byte e is code e in memory order, whatever the host's byte
//     order). No backward: the era's inputs take no gradient.
#include "common.cuh"

extern "C" __global__ void codes_fwd_f32(CodesParams p) {
    GRID_STRIDE(e, p.n) {
        p.out[e] = ((float)p.codes[e] - 2.0f) * 0.5f;
    }
}
