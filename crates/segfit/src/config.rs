//! Build-time configuration: the page, arena and size limits every layer agrees on.
//!
//! Kept in one place (not spread over the layers) so that a change of page size or arena size is a
//! one-line edit; the unit tests in each layer derive their expectations from these constants.

/// log2 of the page size the page heap works in (Go uses 8 KiB pages too).
pub const PAGE_SHIFT: usize = 13;
/// Size of one page heap page: the unit of spans and of the address-to-span map.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// log2 of the arena size: address space is reserved from the OS in arenas of this size.
pub const ARENA_SHIFT: usize = 26;
/// 64 MiB: one arena, reserved `PROT_NONE`, aligned to its own size, committed as it is used.
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
/// Pages per arena, and so entries in one arena's page map.
pub const PAGES_PER_ARENA: usize = ARENA_SIZE / PAGE_SIZE;

/// User-space virtual addresses on x86_64 and aarch64 (4-level paging) fit in 47 bits.
pub const ADDRESS_BITS: usize = 47;
/// Entries of the arena table: one per 64 MiB of the user address space (2^21).
pub const ARENA_TABLE_LEN: usize = 1 << (ADDRESS_BITS - ARENA_SHIFT);

/// Commit granularity inside an arena: the committed prefix grows in steps of this size.
pub const COMMIT_CHUNK: usize = 2 << 20;

/// Largest size served from size classes (Go's `_MaxSmallSize`).
pub const MAX_SMALL: usize = 32 << 10;
/// Minimum alignment of every block (`max_align_t` on x86_64 Linux).
pub const MIN_ALIGN: usize = 16;

/// Blocks above this size (or alignment above [`MAX_PAGE_HEAP_ALIGN`]) are mapped directly from the
/// OS and unmapped on free; smaller large blocks are page runs from the page heap.
pub const HUGE_THRESHOLD: usize = 32 << 20;
/// Largest alignment the page heap serves by trimming a page run; larger ones go to the huge path.
pub const MAX_PAGE_HEAP_ALIGN: usize = 1 << 20;

/// Largest size any allocation may request (`PTRDIFF_MAX`, as C and Rust `Layout` require).
pub const MAX_REQUEST: usize = isize::MAX as usize;
