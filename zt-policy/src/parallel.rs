//! A compile's independent per-item work — reading the cluster's objects, translating
//! pods, resolving policies, closing identity pairs — spread over the machine's cores.
//!
//! One event of a 10,000-pod cluster recompiles everything (about 80 ms on one core); the
//! agent runs on nodes with cores to spare, and an event's latency is what the cluster
//! waits for. [`chunks`] cuts a slice into contiguous pieces, one per thread, runs them in
//! scoped threads and returns their results in slice order, so whatever the caller merges
//! comes out exactly as the sequential loop's. Work below a threshold stays on the calling
//! thread: a thread costs tens of microseconds to start.

use std::sync::OnceLock;
use std::thread;

/// At most this many threads per step: the steps are a few tens of milliseconds each, and
/// beyond a handful of threads the merge and the memory traffic dominate.
const MAX_THREADS: usize = 4;

/// The threads a step may use: the cores this process may run on (its CPU affinity and
/// cgroup quota, so `taskset` or a container's CPU limit bounds it), up to [`MAX_THREADS`].
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| thread::available_parallelism().map_or(1, usize::from).min(MAX_THREADS))
}

/// `f` of contiguous pieces of `items`, in order, each piece at least `min_per_thread`
/// items long (so fewer items than that run on the calling thread, as one piece).
pub fn chunks<'a, T: Sync, R: Send>(items: &'a [T], min_per_thread: usize, f: impl Fn(&'a [T]) -> R + Sync) -> Vec<R> {
    let size = piece_size(items.len(), min_per_thread);
    if size >= items.len() {
        return vec![f(items)];
    }
    each(items.chunks(size).collect(), f)
}

/// [`chunks`] for work that consumes its items.
pub fn owned_chunks<T: Send, R: Send>(
    mut items: Vec<T>,
    min_per_thread: usize,
    f: impl Fn(Vec<T>) -> R + Sync,
) -> Vec<R> {
    let size = piece_size(items.len(), min_per_thread);
    if size >= items.len() {
        return vec![f(items)];
    }
    let mut pieces = Vec::new();
    while items.len() > size {
        let rest = items.split_off(size);
        pieces.push(std::mem::replace(&mut items, rest));
    }
    pieces.push(items);
    each(pieces, f)
}

/// How many items each piece gets: all of them when one thread should do the work.
fn piece_size(len: usize, min_per_thread: usize) -> usize {
    let pieces = match forced() {
        Some(pieces) => pieces.min(len),
        None => threads().min(len / min_per_thread.max(1)),
    };
    len.div_ceil(pieces.max(1)).max(1)
}

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn forced() -> Option<usize> {
    FORCED.get()
}

#[cfg(not(test))]
fn forced() -> Option<usize> {
    None
}

/// Runs `f` with every step of this thread cut into `pieces` pieces, however few items or
/// cores there are (1: all on the calling thread), so tests compare the two ways.
#[cfg(test)]
pub(crate) fn with_pieces<R>(pieces: usize, f: impl FnOnce() -> R) -> R {
    let before = FORCED.replace(Some(pieces));
    let result = f();
    FORCED.set(before);
    result
}

/// `f` of every piece, each on a thread of its own (the first on the calling thread), the
/// results in the pieces' order; a panic in any piece is the caller's.
fn each<T: Send, R: Send>(pieces: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let f = &f;
    thread::scope(|scope| {
        let mut pieces = pieces.into_iter();
        let first = pieces.next();
        let others: Vec<_> = pieces.map(|piece| scope.spawn(move || f(piece))).collect();
        let mut results: Vec<R> = first.into_iter().map(f).collect();
        for other in others {
            results.push(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_come_back_in_order_and_cover_every_item_once() {
        let items: Vec<u32> = (0..10_001).collect();
        let sums = chunks(&items, 100, |part| (part[0], part.len()));
        let mut next = 0;
        for (start, len) in &sums {
            assert_eq!(*start, next, "pieces are contiguous and in order");
            next += *len as u32;
        }
        assert_eq!(next, 10_001);
        assert!(threads() == 1 || sums.len() > 1, "a large slice is split when there are cores");
    }

    #[test]
    fn small_work_stays_on_the_calling_thread() {
        let caller = thread::current().id();
        let seen = chunks(&[1, 2, 3], 100, |part| (thread::current().id(), part.len()));
        assert_eq!(seen, vec![(caller, 3)]);
        assert_eq!(chunks::<u8, usize>(&[], 1, <[u8]>::len), vec![0]);
    }

    #[test]
    fn owned_pieces_come_back_in_order_with_every_item() {
        let items: Vec<String> = (0..5_000).map(|i| i.to_string()).collect();
        let pieces = owned_chunks(items.clone(), 100, |piece| piece);
        assert!(threads() == 1 || pieces.len() > 1);
        assert_eq!(pieces.concat(), items);
        assert_eq!(owned_chunks(vec![7], 100, |piece| piece), vec![vec![7]]);
    }

    #[test]
    fn forced_pieces_split_even_small_work() {
        let items = [1, 2, 3, 4, 5];
        assert_eq!(with_pieces(2, || chunks(&items, 100, <[i32]>::len)), vec![3, 2]);
        assert_eq!(with_pieces(9, || chunks(&items, 100, <[i32]>::len)), vec![1; 5]);
        assert_eq!(with_pieces(1, || chunks(&items, 1, <[i32]>::len)), vec![5]);
        assert_eq!(chunks(&items, 100, <[i32]>::len), vec![5], "the setting ends with the call");
    }
}
