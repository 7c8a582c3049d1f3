//! Reuse of large buffers between training steps: a step allocates the same few hundred
//! activation and gradient buffers every time, and fresh allocations of that size cost page faults
//! (system time) on every step.

use std::sync::Mutex;

/// Buffers below this many floats are left to the allocator.
const MIN_LEN: usize = 4096;
/// Kept buffers of at least this many floats (1 MiB) are zeroed in parallel.
const PAR_ZERO_LEN: usize = 1 << 18;
/// At most this many floats are kept (256 MiB).
const MAX_KEPT: usize = 64 << 20;

struct Pool {
    free: Vec<Vec<f32>>,
    kept: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    kept: 0,
});

/// A zeroed buffer of `len` floats, reusing a kept one of a fitting capacity.
pub fn take(len: usize) -> Vec<f32> {
    match reuse(len) {
        Some(mut v) if len >= PAR_ZERO_LEN => {
            // a large kept buffer is zeroed by every worker (a step's gradients start here;
            // one core alone would leave the others waiting on the memset)
            v.resize(len, 0.0);
            fill_zero(&mut v);
            v
        }
        Some(mut v) => {
            v.clear();
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Zeroes `v`, split over every worker when it is large (at least 1 MiB).
pub fn fill_zero(v: &mut [f32]) {
    if v.len() < PAR_ZERO_LEN {
        v.fill(0.0);
        return;
    }
    let chunk = per_worker(v.len());
    crate::ops::par::run(v.chunks_mut(chunk), |c| c.fill(0.0));
}

/// One worker's share of `len` values.
fn per_worker(len: usize) -> usize {
    len.div_ceil(crate::ops::par::threads().max(1))
}

/// Copies `src` into `dst` (equal lengths), split over every worker when large (a residual add's
/// backward copies a gradient of [n, d]; one core alone would leave the others waiting).
pub fn copy(dst: &mut [f32], src: &[f32]) {
    let len = dst.len().min(src.len());
    if len < PAR_ZERO_LEN {
        dst[..len].copy_from_slice(&src[..len]);
        return;
    }
    let chunk = per_worker(len);
    crate::ops::par::run(
        dst[..len].chunks_mut(chunk).zip(src[..len].chunks(chunk)),
        |(d, s)| d.copy_from_slice(s),
    );
}

/// A buffer of `len` floats whose contents are unspecified: a kept one as it was left (only
/// its length changed), or a fresh one of NaN, so an op that reads an element of its output
/// before writing it shows up as NaN in the first step of any test.
pub fn take_any(len: usize) -> Vec<f32> {
    match reuse(len) {
        Some(mut v) => {
            if v.len() >= len {
                v.truncate(len);
            } else {
                v.resize(len, f32::NAN);
            }
            v
        }
        None => vec![f32::NAN; len],
    }
}

/// An empty buffer with room for `len` floats, for a caller that writes every one of them in
/// order (`extend`): a kept one when one fits, else a fresh allocation that nothing has written
/// yet (a loader making an era's x in a fresh [`take_any`] would write it twice).
pub fn take_empty(len: usize) -> Vec<f32> {
    match reuse(len) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

/// A kept buffer of capacity within [len, 2·len], taken out of the pool.
fn reuse(len: usize) -> Option<Vec<f32>> {
    if len >= MIN_LEN {
        if let Ok(mut p) = POOL.lock() {
            // the smallest kept buffer that fits without wasting more than half of it
            let best = p
                .free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 2 * len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let v = p.free.swap_remove(i);
                p.kept -= v.capacity();
                return Some(v);
            }
        }
    }
    None
}

/// Keeps `v` for a later `take` (or drops it when the pool is full or `v` is small).
pub fn give(v: Vec<f32>) {
    let cap = v.capacity();
    if cap < MIN_LEN {
        return;
    }
    if let Ok(mut p) = POOL.lock() {
        if p.kept + cap <= MAX_KEPT {
            p.kept += cap;
            p.free.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_empty_is_empty_with_room_fresh_or_kept() {
        let len = MIN_LEN * 3 + 17;
        let fresh = take_empty(len);
        assert!(fresh.is_empty() && fresh.capacity() >= len);
        // a kept buffer (its old contents and length) comes back cleared (other tests may
        // share the pool, so which buffer comes back is not asserted)
        let mut kept = vec![1.0f32; len + 5];
        kept.truncate(len - 3);
        give(kept);
        let again = take_empty(len);
        assert!(again.is_empty() && again.capacity() >= len);
    }
}
