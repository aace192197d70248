//! Test support that needs `unsafe`, kept out of the library and its test crates (the
//! workspace forbids `unsafe_code`; installing an allocator with `#[global_allocator]` and
//! calling the functions here needs none).
//!
//! - [`FreedMemoryProbe`]: a global allocator that, while armed with a needle, checks every
//!   block it frees (and every block a reallocation leaves) for that needle. A test arms it
//!   with a plaintext, runs the code under test, and asserts that no freed block held the
//!   plaintext: buffers were wiped before they were freed or grown.
//! - [`in_forked_child`]: runs a closure in a `fork(2)`ed child and returns what it wrote,
//!   so a test can compare what parent and child do with state copied by `fork` (a
//!   thread-local random number generator, for example).
//!
//! **For tests only.**

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

const MAX_NEEDLE: usize = 64;

static NEEDLE: [AtomicU8; MAX_NEEDLE] = [const { AtomicU8::new(0) }; MAX_NEEDLE];
/// Length of the armed needle; 0 when disarmed.
static NEEDLE_LEN: AtomicUsize = AtomicUsize::new(0);
static HITS: AtomicUsize = AtomicUsize::new(0);
static CHECKED: AtomicUsize = AtomicUsize::new(0);
static ARMING: Mutex<()> = Mutex::new(());

/// A global allocator over [`System`] that checks freed memory for a needle.
///
/// Every allocation is zero-filled (so a scan never reads uninitialized bytes), and every
/// reallocation moves (a new block, a copy, the old block freed), so that growing a buffer
/// always frees the old block, as it may with any allocator. While [armed](Self::arm),
/// each freed block is searched for the needle before it is handed back to the system.
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: test_probes::FreedMemoryProbe = test_probes::FreedMemoryProbe;
/// ```
pub struct FreedMemoryProbe;

/// What an armed probe saw; disarms it when dropped.
pub struct Armed {
    _serial: MutexGuard<'static, ()>,
}

impl FreedMemoryProbe {
    /// Arms the probe with `needle` (1 to 64 bytes) and resets its counters. Only one test
    /// in a process is armed at a time: this waits for the previous [`Armed`] to drop.
    ///
    /// # Panics
    ///
    /// If `needle` is empty or longer than 64 bytes.
    pub fn arm(needle: &[u8]) -> Armed {
        assert!(
            !needle.is_empty() && needle.len() <= MAX_NEEDLE,
            "needle of 1..=64 bytes"
        );
        let serial = ARMING.lock().unwrap_or_else(PoisonError::into_inner);
        for (slot, b) in NEEDLE.iter().zip(needle) {
            slot.store(*b, Ordering::Relaxed);
        }
        HITS.store(0, Ordering::SeqCst);
        CHECKED.store(0, Ordering::SeqCst);
        NEEDLE_LEN.store(needle.len(), Ordering::SeqCst);
        Armed { _serial: serial }
    }
}

impl Armed {
    /// Freed blocks that held the needle since arming.
    pub fn hits(&self) -> usize {
        HITS.load(Ordering::SeqCst)
    }

    /// Freed blocks checked since arming (to show the probe was installed and saw frees).
    pub fn checked(&self) -> usize {
        CHECKED.load(Ordering::SeqCst)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        NEEDLE_LEN.store(0, Ordering::SeqCst);
    }
}

/// Whether the `len` initialized bytes at `ptr` contain the armed needle.
///
/// # Safety
///
/// `ptr..ptr + len` must be readable, initialized and not written concurrently.
unsafe fn holds_needle(ptr: *const u8, len: usize) -> bool {
    let n = NEEDLE_LEN.load(Ordering::SeqCst);
    if n == 0 || len < n {
        return false;
    }
    let mut needle = [0u8; MAX_NEEDLE];
    for (b, slot) in needle.iter_mut().zip(&NEEDLE).take(n) {
        *b = slot.load(Ordering::Relaxed);
    }
    // SAFETY: the caller guarantees the range is readable and initialized (every block of
    // this allocator is zero-filled when it is allocated).
    let block = unsafe { std::slice::from_raw_parts(ptr, len) };
    block.windows(n).any(|w| w == &needle[..n])
}

/// Checks a block about to be freed.
///
/// # Safety
///
/// As [`holds_needle`].
unsafe fn check_freed(ptr: *const u8, len: usize) {
    // The scan allocates nothing, so it never reenters the allocator.
    if NEEDLE_LEN.load(Ordering::Relaxed) == 0 {
        return;
    }
    CHECKED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: forwarded from the caller.
    if unsafe { holds_needle(ptr, len) } {
        HITS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every method forwards to `System` with the same layout; `realloc` is an
// allocation of the new size, a copy of the smaller size and a deallocation of the old
// block, which is what `GlobalAlloc::realloc` is allowed to be.
unsafe impl GlobalAlloc for FreedMemoryProbe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `GlobalAlloc::alloc`'s, which `System` shares.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes of this allocator, all
        // initialized (zero-filled at allocation) and owned by the caller, who frees it.
        unsafe { check_freed(ptr, layout.size()) };
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` rounded to the alignment fits `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (the caller's contract for `realloc`).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` is the caller's live block of `layout`, now copied.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

/// Runs `f` in a child process made by `fork(2)` and returns the bytes it returned.
///
/// The child is a copy of the calling process at the moment of the call (thread-local
/// state included) with only the calling thread; it runs `f`, writes the result to a pipe
/// and exits with `_exit`, running no destructors or exit handlers. Call it from a test
/// process whose other threads hold no locks `f` needs (a test file with one test).
///
/// # Errors
///
/// The operating system error of `pipe`, `fork` or the read; an error of kind `Other`
/// when the child panicked or exited with a non-zero status.
pub fn in_forked_child(f: impl FnOnce() -> Vec<u8>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::FromRawFd;

    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for `pipe` to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // SAFETY: `fork` has no preconditions; the child below only runs `f`, writes to the
    // pipe and calls `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: both descriptors are ours and open.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        return Err(e);
    }
    if pid == 0 {
        // SAFETY: the child's copy of the read end is ours and open.
        unsafe { libc::close(read_fd) };
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(bytes) => {
                let mut rest = &bytes[..];
                let mut code = 0;
                while !rest.is_empty() {
                    // SAFETY: `rest` is a valid buffer of `rest.len()` bytes.
                    let n = unsafe { libc::write(write_fd, rest.as_ptr().cast(), rest.len()) };
                    if n <= 0 {
                        code = 3;
                        break;
                    }
                    rest = &rest[n.unsigned_abs()..];
                }
                code
            }
            Err(_) => 2,
        };
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(code) }
    }
    // SAFETY: the parent's copy of the write end is ours and open.
    unsafe { libc::close(write_fd) };
    // SAFETY: `read_fd` is open and owned by nobody else; the `File` closes it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(read_fd) };
    let mut out = Vec::new();
    let read = pipe.read_to_end(&mut out);
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid int to fill.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    read?;
    if waited != pid {
        return Err(std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(std::io::Error::other(format!(
            "the forked child failed (wait status {status})"
        )));
    }
    Ok(out)
}
