//! Per-thread shards for what every native mock request counts (metric series, the
//! analytics tally).
//!
//! A counter every request updates is a cache line every core writes: shared, it moves
//! between cores on each request, and a lock around it is contended. [`Sharded`] keeps one
//! copy per thread instead (a thread always takes the same shard, so its lock is never
//! contended and its lines stay in its core's cache); readers, once a scrape or once a
//! second, lock each shard in turn and fold the copies together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Shards per [`Sharded`]: more than the threads that answer requests (the runtime's
/// workers, one per core), so that two rarely share one.
const SHARDS: usize = 16;

/// One `T` per thread (up to [`SHARDS`]; beyond that threads share).
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<Mutex<T>>]>,
}

/// A shard on cache lines of its own: two threads' shards side by side would share a line
/// and move it between cores all the same.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Padded::default()).collect() }
    }
}

impl<T> Sharded<T> {
    /// This thread's shard.
    pub fn mine(&self) -> MutexGuard<'_, T> {
        lock(&self.shards[thread_index() % self.shards.len()].0)
    }

    /// Every shard in turn, each locked while `f` runs on it.
    pub fn each(&self, mut f: impl FnMut(&mut T)) {
        for shard in &*self.shards {
            f(&mut lock(&shard.0));
        }
    }
}

/// `mutex`, locked even if a thread panicked while holding it: what these mutexes guard are
/// counts, not invariants a panic could break, so counting goes on.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This thread's number, given on its first use: threads take shards in turn.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

/// Where `text` is and how long: a key for a label the compiled API holds (an `Arc<str>`
/// or a `&'static str`), hashed and compared as two words instead of as text. Equal keys
/// are the same bytes, so the same text (the length tells apart literals the compiler may
/// lay out one inside the other, such as `GET` and `GET /`). An entry keyed by an `Arc`'s
/// text must hold a clone of that `Arc`, so the address stays its own while the entry
/// lives. Two copies of equal text are two keys for one series or row, which readers add
/// together.
pub fn address(text: &str) -> (usize, usize) {
    (text.as_ptr() as usize, text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_count_apart_and_readers_see_every_shard() {
        let sharded = std::sync::Arc::new(Sharded::<u64>::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let sharded = sharded.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        *sharded.mine() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut total = 0;
        let mut used = 0;
        sharded.each(|n| {
            total += *n;
            used += usize::from(*n > 0);
        });
        assert_eq!(total, 8000);
        assert!(used > 1, "threads took different shards");
    }
}
