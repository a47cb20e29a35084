//! The one fatal-error path, and a stack buffer for messages that must not allocate.
//!
//! Every detected misuse (double free, invalid pointer, corrupted metadata) ends here: one line is
//! formatted into a stack buffer, written with raw `write(2)` (retried on `EINTR`), then the process
//! aborts. Nothing here allocates, takes a lock or uses `core::fmt`, so it is safe to call from any
//! allocator path. The OS-call tracer uses [`StackBuf`] for the same reasons.

/// A fixed-capacity line buffer on the stack. Writes past the end are silently truncated.
pub struct StackBuf {
    buf: [u8; 256],
    len: usize,
}

impl StackBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        StackBuf {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Appends raw bytes (truncating at capacity).
    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    /// Appends a string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Appends `0x` and the lowercase hex digits of `v`.
    pub fn hex(&mut self, v: usize) -> &mut Self {
        self.str("0x").digits(v as u64, 16)
    }

    /// Appends the decimal digits of `v`.
    pub fn dec(&mut self, v: u64) -> &mut Self {
        self.digits(v, 10)
    }

    fn digits(&mut self, v: u64, radix: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut n = 0;
        let mut x = v;
        loop {
            digits[n] = b"0123456789abcdef"[(x % radix) as usize];
            n += 1;
            x /= radix;
            if x == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.bytes(&digits[..n])
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }

    /// Writes the buffer to file descriptor `fd`, retrying on `EINTR` and short writes.
    pub fn write_to(&self, fd: i32) {
        let mut off = 0;
        while off < self.len {
            let rest = self.as_bytes().get(off..).unwrap_or(&[]);
            // SAFETY: the pointer and length describe the initialised part of `self.buf`.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                // SAFETY: `__errno_location` always returns this thread's errno slot.
                if unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                return;
            }
            if n == 0 {
                return;
            }
            off += n as usize;
        }
    }
}

impl Default for StackBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// A `core::fmt::Write` that formats into a stack buffer and writes full buffers to a file
/// descriptor: formatted output (statistics, JSON) without allocating. Call [`FdWriter::flush`]
/// at the end.
pub struct FdWriter {
    fd: i32,
    buf: StackBuf,
}

impl FdWriter {
    /// A writer to `fd`.
    pub const fn new(fd: i32) -> Self {
        FdWriter {
            fd,
            buf: StackBuf::new(),
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        self.buf.write_to(self.fd);
        self.buf.len = 0;
    }
}

impl core::fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for chunk in s.as_bytes().chunks(128) {
            if self.buf.len + chunk.len() > self.buf.buf.len() {
                self.flush();
            }
            self.buf.bytes(chunk);
        }
        Ok(())
    }
}

impl Drop for FdWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Reports a fatal misuse detected in `op` (e.g. `"free"`) and aborts the process.
///
/// Prints exactly one line, `segfit: fatal: <op>(): <what> ptr=0x…`, to stderr.
#[cold]
#[inline(never)]
pub fn fatal(op: &str, what: &str, ptr: usize) -> ! {
    let mut b = StackBuf::new();
    b.str("segfit: fatal: ")
        .str(op)
        .str("(): ")
        .str(what)
        .str(" ptr=")
        .hex(ptr)
        .str("\n");
    b.write_to(2);
    // SAFETY: abort has no preconditions; it never returns.
    unsafe { libc::abort() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hex_and_decimal_without_allocating() {
        let mut b = StackBuf::new();
        b.hex(0)
            .str(" ")
            .hex(0xdead_beef)
            .str(" ")
            .dec(0)
            .str(" ")
            .dec(1234567890123);
        assert_eq!(b.as_bytes(), b"0x0 0xdeadbeef 0 1234567890123");
    }

    #[test]
    fn truncates_instead_of_overflowing() {
        let mut b = StackBuf::new();
        for _ in 0..100 {
            b.str("abcdef");
        }
        assert_eq!(b.as_bytes().len(), 256);
    }
}
