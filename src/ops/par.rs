//! Work splitting over rows with `std::thread::scope`.
//!
//! An op cuts its rows into at most [`threads`] contiguous chunks ([`chunk_rows`]), zips the chunks
//! of every buffer it writes, and hands the zipped items to [`run`], which runs one item on the
//! calling thread and the rest on scoped threads. Small work (under [`MIN_PAR_FLOPS`]) stays on one
//! thread. Results come back in chunk order, so reductions over chunks are deterministic for a given
//! thread count.

use std::sync::OnceLock;

/// Below this many flops an op runs on the calling thread: spawning costs more than it saves.
pub const MIN_PAR_FLOPS: usize = 32 * 1024;

/// Worker threads to use: `std::thread::available_parallelism()`, read once.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1)
            .max(1)
    })
}

/// Rows per chunk for `n` rows costing `flops_per_row` each: all n (one chunk) when the work is
/// small, else ⌈n / threads⌉ (at least 1).
pub fn chunk_rows(n: usize, flops_per_row: usize) -> usize {
    let t = threads();
    if t <= 1 || n <= 1 || n.saturating_mul(flops_per_row) < MIN_PAR_FLOPS {
        return n.max(1);
    }
    n.div_ceil(t.min(n)).max(1)
}

/// Like [`chunk_rows`], but the chunk is rounded up to a multiple of `align` (e.g. 4 so a dropout
/// chunk starts on a Philox counter boundary).
pub fn chunk_rows_aligned(n: usize, flops_per_row: usize, align: usize) -> usize {
    let c = chunk_rows(n, flops_per_row);
    let a = align.max(1);
    c.div_ceil(a) * a
}

/// Runs `f` on every item, the first on the calling thread and the others on scoped threads;
/// returns the results in item order. A panic in a worker is re-raised on the caller.
pub fn run<I, T, F>(items: I, f: F) -> Vec<T>
where
    I: IntoIterator,
    I::Item: Send,
    T: Send,
    F: Fn(I::Item) -> T + Sync,
{
    let mut items: Vec<I::Item> = items.into_iter().collect();
    if items.len() <= 1 {
        return items.into_iter().map(&f).collect();
    }
    let first = items.remove(0);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        let mut out = Vec::with_capacity(handles.len() + 1);
        out.push(f(first));
        for h in handles {
            match h.join() {
                Ok(v) => out.push(v),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        out
    })
}

/// Row ranges `[start, end)` covering `0..n` in chunks of `chunk` rows.
pub fn ranges(n: usize, chunk: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let c = chunk.max(1);
    (0..n.div_ceil(c)).map(move |i| i * c..((i + 1) * c).min(n))
}
