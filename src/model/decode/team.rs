//! The threads of the rayon pool working through one decode step together. A step is a chain
//! of a few hundred small parallel products with a little serial work between them; rayon's
//! fork-join per product (queue a job, wake a sleeping thread, wait on a latch) costs as much as
//! a small product itself. Here the helpers stay for the whole step and spin between products,
//! and the leader never waits for a helper to show up: a chunk is done by whoever claims it
//! first, so a pool whose other threads are busy elsewhere still finishes the step alone.

use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The low bits of `Shared::claims`: the next chunk of the current task.
const CHUNK_BITS: u32 = 32;
const CHUNK_MASK: u64 = (1 << CHUNK_BITS) - 1;

/// A task's chunk function with its lifetime erased; see [`Team::run`] for why it stays valid.
type Chunk = *const (dyn Fn(usize) + Sync + 'static);

struct Task {
    seq: u64,
    chunks: usize,
    f: Option<Chunk>,
}

// SAFETY: the pointer is only dereferenced while its task is current (see `Team::run`); the
// closure behind it is `Sync`.
unsafe impl Send for Task {}

struct Shared {
    /// The current task's number; helpers spin on it.
    published: AtomicU64,
    task: Mutex<Task>,
    /// `task number << 32 | next chunk`: a claim names its task, so a helper that fell behind
    /// cannot claim a chunk of a later task with an earlier task's function.
    claims: AtomicU64,
    /// Chunks of the current task finished.
    done: AtomicUsize,
    finished: AtomicBool,
}

impl Shared {
    fn claim(&self, seq: u64, chunks: usize) -> Option<usize> {
        let mut v = self.claims.load(Ordering::Acquire);
        loop {
            let next = (v & CHUNK_MASK) as usize;
            if v >> CHUNK_BITS != seq || next >= chunks {
                return None;
            }
            match self
                .claims
                .compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next),
                Err(now) => v = now,
            }
        }
    }

    /// Runs claimed chunks of task `seq` until none is left.
    fn work(&self, seq: u64, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        while let Some(i) = self.claim(seq, chunks) {
            // Counted even if `f` panics, so that the leader stops waiting and the panic
            // reaches the caller through rayon.
            let _done = Done(&self.done);
            f(i);
        }
    }

    /// A helper: works on each task the leader publishes until the step is over.
    fn help(&self) {
        let mut seen = 0;
        let mut idle = 0u32;
        while !self.finished.load(Ordering::Acquire) {
            let seq = self.published.load(Ordering::Acquire);
            if seq == seen {
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(1024) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let (task_seq, chunks, f) = {
                let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
                (task.seq, task.chunks, task.f)
            };
            if task_seq != seq {
                continue;
            }
            if let Some(f) = f {
                // SAFETY: a chunk of task `seq` is claimed only while the leader is inside
                // `Team::run` for it, which keeps the closure alive until every claimed chunk
                // is done; a claim for an older task fails.
                self.work(seq, chunks, unsafe { &*f });
            }
            seen = seq;
            idle = 0;
        }
    }
}

struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Ends the helpers' loop when the leader's body returns or unwinds.
struct Finish<'a>(&'a AtomicBool);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The leader's handle: runs tasks with whichever pool threads join in.
pub struct Team<'a> {
    shared: &'a Shared,
    /// The leader and its helpers (some of which may not show up).
    size: usize,
    seq: std::cell::Cell<u64>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl Team<'_> {
    /// Threads that may work on a task: split work into at least this many chunks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `f(i)` for every `i < chunks`, each exactly once, on this thread and the helpers;
    /// returns when all are done. Chunks must write disjoint data.
    pub fn run(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        let sh = self.shared;
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        sh.done.store(0, Ordering::Relaxed);
        {
            let mut task = sh.task.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY (of later dereferences): this function does not return before `done`
            // counts every chunk of task `seq`, and no chunk of it can be claimed after that
            // (all are claimed); so `f` outlives every call made through the pointer.
            let erased: Chunk =
                unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Chunk>(f) };
            *task = Task {
                seq,
                chunks,
                f: Some(erased),
            };
        }
        sh.claims.store(seq << CHUNK_BITS, Ordering::Release);
        sh.published.store(seq, Ordering::Release);
        sh.work(seq, chunks, f);
        while sh.done.load(Ordering::Acquire) < chunks {
            std::hint::spin_loop();
        }
    }
}

/// Runs `body` as the leader of a team made of the current rayon pool's threads.
pub fn with_team<R: Send>(body: impl FnOnce(&Team) -> R + Send) -> R {
    let shared = Shared {
        published: AtomicU64::new(0),
        task: Mutex::new(Task {
            seq: 0,
            chunks: 0,
            f: None,
        }),
        claims: AtomicU64::new(0),
        done: AtomicUsize::new(0),
        finished: AtomicBool::new(false),
    };
    let helpers = rayon::current_num_threads().saturating_sub(1);
    let shared = &shared;
    rayon::scope(|s| {
        for _ in 0..helpers {
            s.spawn(move |_| shared.help());
        }
        let _finish = Finish(&shared.finished);
        body(&Team {
            shared,
            size: helpers + 1,
            seq: std::cell::Cell::new(0),
            _not_sync: PhantomData,
        })
    })
}

/// A slice that a task's chunks write in disjoint ranges.
pub struct Disjoint<'a, T = f32> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the slice is borrowed mutably for `'a`; chunks write disjoint ranges of it (the
// contract of `Disjoint::range`).
unsafe impl<T: Send> Send for Disjoint<'_, T> {}
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub fn new(data: &'a mut [T]) -> Self {
        Disjoint {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            _borrow: PhantomData,
        }
    }

    /// `len` values from `start`.
    ///
    /// # Safety
    /// No other live reference from this `Disjoint` may overlap the range: each chunk of a
    /// task takes its own range.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "range past the end of the slice");
        // SAFETY: in bounds (checked); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_of_every_task_runs_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let counts: Vec<AtomicUsize> = (0..500).map(|_| AtomicUsize::new(0)).collect();
        pool.install(|| {
            with_team(|team| {
                for task in 0..200 {
                    let chunks = 1 + task % 7 + (task % 3) * 100;
                    let mut out = vec![0f32; chunks];
                    let d = Disjoint::new(&mut out);
                    team.run(chunks, &|i| {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                        // SAFETY: chunk i writes only value i.
                        let slot = unsafe { d.range(i, 1) };
                        slot[0] = (task * 1000 + i) as f32;
                    });
                    assert!(
                        out.iter()
                            .enumerate()
                            .all(|(i, v)| *v == (task * 1000 + i) as f32),
                        "task {task}"
                    );
                }
            })
        });
        let expected: usize = (0..200).map(|t| 1 + t % 7 + (t % 3) * 100).sum();
        let total: usize = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        assert_eq!(total, expected);
    }

    #[test]
    fn the_leader_finishes_alone_when_the_other_threads_are_busy() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let release = AtomicBool::new(false);
        let sum = pool.install(|| {
            rayon::join(
                || {
                    // Holds the other thread until the team is done.
                    while !release.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                },
                || {
                    let sum = with_team(|team| {
                        let total = AtomicUsize::new(0);
                        team.run(64, &|i| {
                            total.fetch_add(i, Ordering::Relaxed);
                        });
                        total.into_inner()
                    });
                    release.store(true, Ordering::Release);
                    sum
                },
            )
            .1
        });
        assert_eq!(sum, 64 * 63 / 2);
    }

    #[test]
    fn a_panicking_chunk_reaches_the_caller() {
        let result = std::panic::catch_unwind(|| {
            with_team(|team| {
                team.run(8, &|i| assert!(i != 5, "chunk five fails"));
            })
        });
        assert!(result.is_err());
    }
}
