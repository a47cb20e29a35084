//! `Locked`: a lock around any [`RegionAlloc`] so it can be shared, used as
//! `#[global_allocator]` (via `GlobalAlloc`) or, with the `allocator-api2`
//! feature, as an `Allocator`.
//!
//! Invariant: the inner allocator is only touched while `lock` is held.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::{ClaimError, RegionAlloc};

/// A raw mutual-exclusion lock, so [`Locked`] can use the lock of your
/// platform (an interrupt-disabling lock on a kernel, a futex, ...).
///
/// # Safety
/// `lock` must not return while another holder has not called `unlock`
/// (mutual exclusion), and `INIT` must be an unlocked lock.
pub unsafe trait RawLock {
    /// An unlocked lock.
    const INIT: Self;
    /// Blocks until the lock is held by the caller.
    fn lock(&self);
    /// Releases the lock.
    ///
    /// # Safety
    /// The caller must hold the lock (taken with [`RawLock::lock`]).
    unsafe fn unlock(&self);
}

/// A test-and-test-and-set spin lock: the default for [`Locked`].
pub struct SpinLock(AtomicBool);

// SAFETY: the compare-exchange grants the lock to one holder at a time; the
// Acquire/Release pair orders the protected accesses.
unsafe impl RawLock for SpinLock {
    const INIT: Self = SpinLock(AtomicBool::new(false));

    #[inline]
    fn lock(&self) {
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.0.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// An allocator behind a lock. Implements [`GlobalAlloc`], so any allocator
/// of this crate can be the `#[global_allocator]`.
///
/// ```
/// use segfit_region::{Locked, SegregatedFit};
///
/// static HEAP: Locked<SegregatedFit> = Locked::new(SegregatedFit::new());
/// // In a kernel or firmware, add `#[global_allocator]` on the static and
/// // claim the heap memory early at boot.
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// // SAFETY: the leaked memory is ours forever and used for nothing else.
/// unsafe { HEAP.claim(memory.as_mut_ptr(), memory.len()) }.unwrap();
/// let layout = core::alloc::Layout::new::<[u32; 8]>();
/// use core::alloc::GlobalAlloc;
/// // SAFETY: `layout` has non-zero size.
/// let p = unsafe { HEAP.alloc(layout) };
/// assert!(!p.is_null());
/// // SAFETY: `p` was allocated above with `layout`.
/// unsafe { HEAP.dealloc(p, layout) };
/// ```
pub struct Locked<A, L: RawLock = SpinLock> {
    lock: L,
    inner: UnsafeCell<A>,
}

// SAFETY: every access to `inner` goes through the lock, so sharing `Locked`
// between threads hands `A` from one thread to another (hence `A: Send`).
unsafe impl<A: Send, L: RawLock + Sync> Sync for Locked<A, L> {}

impl<A, L: RawLock> Locked<A, L> {
    /// Wraps `inner` with an unlocked lock.
    pub const fn new(inner: A) -> Self {
        Locked {
            lock: L::INIT,
            inner: UnsafeCell::new(inner),
        }
    }

    /// Takes the lock; the guard gives `&mut A` and unlocks when dropped.
    pub fn lock(&self) -> LockGuard<'_, A, L> {
        self.lock.lock();
        LockGuard { locked: self }
    }

    /// Consumes the wrapper, returning the allocator.
    pub fn into_inner(self) -> A {
        self.inner.into_inner()
    }
}

impl<A: RegionAlloc, L: RawLock> Locked<A, L> {
    /// Gives the allocator more memory; see [`RegionAlloc::claim`].
    ///
    /// # Safety
    /// Same contract as [`RegionAlloc::claim`].
    pub unsafe fn claim(&self, base: *mut u8, len: usize) -> Result<(), ClaimError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.lock().claim(base, len) }
    }
}

/// Holds the lock of a [`Locked`]; derefs to the allocator.
pub struct LockGuard<'a, A, L: RawLock> {
    locked: &'a Locked<A, L>,
}

impl<A, L: RawLock> Deref for LockGuard<'_, A, L> {
    type Target = A;
    fn deref(&self) -> &A {
        // SAFETY: the guard holds the lock, so no one else touches `inner`.
        unsafe { &*self.locked.inner.get() }
    }
}

impl<A, L: RawLock> DerefMut for LockGuard<'_, A, L> {
    fn deref_mut(&mut self) -> &mut A {
        // SAFETY: the guard holds the lock, so this is the only reference.
        unsafe { &mut *self.locked.inner.get() }
    }
}

impl<A, L: RawLock> Drop for LockGuard<'_, A, L> {
    fn drop(&mut self) {
        // SAFETY: the guard was created by `lock`, so we hold the lock.
        unsafe { self.locked.lock.unlock() }
    }
}

// SAFETY: `alloc` returns blocks from `A`, which never hands out overlapping
// live blocks and honours size and alignment; null on failure.
unsafe impl<A: RegionAlloc, L: RawLock> GlobalAlloc for Locked<A, L> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.lock()
            .allocate(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` is live with `layout`.
            unsafe { self.lock().deallocate(p, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return ptr::null_mut();
        };
        // SAFETY: `GlobalAlloc::realloc`'s contract: `ptr` is live with `layout`.
        unsafe { self.lock().reallocate(p, layout, new_size) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}

#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::alloc::{AllocError, Allocator};

    fn slice(p: NonNull<u8>, len: usize) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(p, len)
    }

    // SAFETY: blocks come from `A` (disjoint, sized and aligned as asked) and
    // stay valid until deallocated through the same `Locked`.
    unsafe impl<A: RegionAlloc, L: RawLock> Allocator for &Locked<A, L> {
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            self.lock()
                .allocate(layout)
                .map(|p| slice(p, layout.size()))
                .ok_or(AllocError)
        }

        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            // SAFETY: `Allocator::deallocate`'s contract.
            unsafe { self.lock().deallocate(ptr, layout) }
        }

        unsafe fn grow(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: `Allocator::grow`'s contract: `ptr` is live with `old`.
            unsafe { self.resize(ptr, old, new) }
        }

        unsafe fn shrink(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: `Allocator::shrink`'s contract: `ptr` is live with `old`.
            unsafe { self.resize(ptr, old, new) }
        }
    }

    impl<A: RegionAlloc, L: RawLock> Locked<A, L> {
        /// # Safety
        /// `ptr` must be live in this allocator with layout `old`.
        unsafe fn resize(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            let mut a = self.lock();
            if new.align() <= old.align() {
                // SAFETY: forwarded; `ptr` already satisfies `new.align()` and
                // `reallocate` keeps `old.align()`, which is enough.
                let moved = unsafe { a.reallocate(ptr, old, new.size()) };
                return moved.map(|p| slice(p, new.size())).ok_or(AllocError);
            }
            // SAFETY: forwarded from the caller.
            unsafe { relocate(&mut *a, ptr, old, new) }
        }
    }

    /// Allocates `new`, copies, frees `ptr`.
    ///
    /// # Safety
    /// `ptr` must be live in `a` with layout `old`.
    unsafe fn relocate<A: RegionAlloc>(
        a: &mut A,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let q = a.allocate(new).ok_or(AllocError)?;
        // SAFETY: `q` is fresh, disjoint from the live `ptr`; both hold the copied length.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), q.as_ptr(), old.size().min(new.size()));
            a.deallocate(ptr, old);
        }
        Ok(slice(q, new.size()))
    }
}
