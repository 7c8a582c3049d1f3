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
    /// Kept buffers, in the order they were given back (oldest first).
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
        None => fresh(len, 0.0),
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
        None => fresh(len, f32::NAN),
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
        None => Vec::with_capacity(room(len)),
    }
}

/// Capacity for a fresh buffer of `len` floats: a quarter more where the pool may keep it, so the
/// next era's somewhat longer tensors fit it too (eras' lengths vary by ±20%).
fn room(len: usize) -> usize {
    if len >= MIN_LEN {
        len + len / 4
    } else {
        len
    }
}

/// A fresh buffer of `len` copies of `v`, with [`room`] to grow. Zeros come from the allocator's
/// zeroed pages (untouched until written: the room costs no page faults until used).
fn fresh(len: usize, v: f32) -> Vec<f32> {
    let mut b = if v.to_bits() == 0 {
        vec![0.0; room(len)]
    } else {
        Vec::with_capacity(room(len))
    };
    b.resize(len, v);
    b
}

/// A kept buffer of capacity within [len, 2·len], taken out of the pool.
fn reuse(len: usize) -> Option<Vec<f32>> {
    if len < MIN_LEN {
        return None;
    }
    POOL.lock().ok()?.take_fit(len)
}

/// Keeps `v` for a later `take`, dropping the pool's oldest buffers when it is full (`Pool::keep`;
/// a small `v` is left to the allocator).
pub fn give(v: Vec<f32>) {
    if v.capacity() < MIN_LEN {
        return;
    }
    if let Ok(mut p) = POOL.lock() {
        p.keep(v, MAX_KEPT);
    }
}

impl Pool {
    /// The smallest kept buffer that fits `len` without wasting more than half of it.
    fn take_fit(&mut self, len: usize) -> Option<Vec<f32>> {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 2 * len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        // `remove`, not `swap_remove`: `free` stays in the order the buffers were given back
        let v = self.free.remove(best);
        self.kept -= v.capacity();
        Some(v)
    }

    /// Keeps `v` within `max` floats in all. When full, the buffers kept longest ago are dropped
    /// to make room (a step gives back its tensors together, so the oldest are those no recent
    /// step used: a shorter era's, or another phase's such as validation). Refusing `v` instead
    /// left the pool full of buffers too small for the next, longer era, whose tensors were then
    /// allocated (page-faulted) afresh every step. `v` is dropped when it alone exceeds `max`.
    fn keep(&mut self, v: Vec<f32>, max: usize) {
        let cap = v.capacity();
        if cap > max {
            return;
        }
        let mut drop = 0;
        while self.kept + cap > max {
            let Some(f) = self.free.get(drop) else { break };
            self.kept -= f.capacity();
            drop += 1;
        }
        self.free.drain(..drop);
        self.kept += cap;
        self.free.push(v);
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

    /// A full pool drops the buffers given back longest ago to make room, whatever their size,
    /// and refuses only a buffer larger than it may hold; a take gets the smallest kept buffer
    /// within 2× of its length and leaves the others in their order.
    #[test]
    fn a_full_pool_drops_its_oldest_buffers() {
        let mut p = Pool {
            free: Vec::new(),
            kept: 0,
        };
        let caps = |p: &Pool| p.free.iter().map(|v| v.capacity()).collect::<Vec<_>>();
        for c in [100, 300, 200] {
            p.keep(Vec::with_capacity(c), 600);
        }
        assert_eq!((caps(&p), p.kept), (vec![100, 300, 200], 600));
        // 250 needs 250 more: 100 and 300 go (the oldest), 200 stays
        p.keep(Vec::with_capacity(250), 600);
        assert_eq!((caps(&p), p.kept), (vec![200, 250], 450));
        // larger than the pool may hold: refused, nothing dropped for it
        p.keep(Vec::with_capacity(700), 600);
        assert_eq!((caps(&p), p.kept), (vec![200, 250], 450));
        p.keep(Vec::with_capacity(150), 600);
        assert_eq!(caps(&p), vec![200, 250, 150]);
        assert!(
            p.take_fit(70).is_none(),
            "every kept buffer wastes more than half of 70"
        );
        assert_eq!(p.take_fit(120).map(|v| v.capacity()), Some(150));
        assert_eq!(p.take_fit(190).map(|v| v.capacity()), Some(200));
        assert_eq!((caps(&p), p.kept), (vec![250], 250));
    }

    /// A fresh buffer has a quarter more room than asked (the next, longer era's tensors fit
    /// it), zeros or NaN as asked.
    #[test]
    fn fresh_buffers_have_room_for_a_longer_era() {
        let len = MIN_LEN * 4 + 3;
        for v in [0.0f32, f32::NAN] {
            let b = fresh(len, v);
            assert_eq!(b.len(), len);
            assert!(b.capacity() >= len + len / 4);
            assert!(b.iter().all(|x| x.to_bits() == v.to_bits()));
        }
        assert_eq!(room(MIN_LEN - 1), MIN_LEN - 1);
    }
}
