//! The global allocator: mimalloc, called as C's `malloc` is whenever the alignment allows.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every allocation to `mi_malloc_aligned`. In
//! mimalloc 3 that takes the plain path only when the size class is a power of two, or when
//! the class's page has a free block at hand; otherwise it over-allocates (a 24-byte block
//! in a 32-byte class, say) through `mi_theap_malloc_zero_aligned_at_overalloc`. A mock
//! request makes about 19 allocations, and under callgrind they cost 86 instructions each
//! through the aligned entry (ARCHITECTURE.md, "Memory"). Rust's own `System` allocator
//! makes the same choice over glibc as this one does over mimalloc: `malloc` when the
//! alignment is at most 16 and at most the size, the aligned call otherwise.
//!
//! This is the workspace's one module with `unsafe` code: the allocator interface is
//! `unsafe` by definition. Each call forwards the caller's contract to mimalloc unchanged.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every block `mi_malloc` returns for at least this many bytes is aligned to this
/// (mimalloc's `MI_MAX_ALIGN_SIZE`, `alignof(max_align_t)` on the platforms we build for),
/// and a smaller one to every power of two up to its size: C's `malloc` contract, which
/// mimalloc keeps as a drop-in replacement for it.
const PLAIN_ALIGN: usize = 16;

/// mimalloc, through its plain entry points where they meet the layout's alignment.
#[derive(Debug)]
pub struct Mimalloc;

/// Whether `mi_malloc(size)` is aligned enough for `align` (see [`PLAIN_ALIGN`]).
#[inline]
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every method passes a layout the caller vouches for (`GlobalAlloc`'s contract) to
// a mimalloc function that meets it: the plain ones only where `plain` holds (see
// `PLAIN_ALIGN`), the aligned ones otherwise; `mi_free` and `mi_realloc` take any block
// mimalloc handed out, from either entry.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl. A block that stays in place keeps its alignment; a moved one
        // is allocated as `alloc` would for the new size.
        unsafe {
            if plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::Mimalloc;

    /// Each block is as aligned as asked and keeps what is written to it through growth and
    /// shrinking, and a zeroed one is zero: for every alignment up to a page, and sizes
    /// around every small size class (where the plain and aligned paths meet).
    #[test]
    #[allow(unsafe_code)]
    fn blocks_are_aligned_and_usable() {
        let sizes = (1..=300).chain([511, 512, 513, 4095, 4096, 65_536, 1 << 20]);
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in sizes.clone() {
                let layout = Layout::from_size_align(size, align).unwrap();
                let grown = Layout::from_size_align(size * 3, align).unwrap();
                let aligned = |p: *mut u8| !p.is_null() && (p as usize).is_multiple_of(align);
                // SAFETY: non-zero sizes; each block is written within its size and freed
                // once, with the layout it has then.
                unsafe {
                    // Several at once, so that a size class's page runs out of free blocks
                    // (where mimalloc's aligned entry over-allocates).
                    let blocks: Vec<*mut u8> = (0..40).map(|_| Mimalloc.alloc(layout)).collect();
                    for (i, &p) in blocks.iter().enumerate() {
                        assert!(aligned(p), "alloc {size} aligned to {align}: {p:p}");
                        p.write_bytes(i as u8, size);
                    }
                    for (i, p) in blocks.into_iter().enumerate() {
                        let kept = |p: *mut u8| {
                            std::slice::from_raw_parts(p, size).iter().all(|&b| b == i as u8)
                        };
                        let p = Mimalloc.realloc(p, layout, grown.size());
                        assert!(aligned(p) && kept(p), "grown from {size} aligned to {align}");
                        let p = Mimalloc.realloc(p, grown, size);
                        assert!(aligned(p) && kept(p), "shrunk to {size} aligned to {align}");
                        Mimalloc.dealloc(p, layout);
                    }
                    let z = Mimalloc.alloc_zeroed(layout);
                    assert!(aligned(z), "zeroed {size} aligned to {align}: {z:p}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    Mimalloc.dealloc(z, layout);
                }
            }
        }
    }
}
