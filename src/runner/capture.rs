//! Bounded capture of a worker's output streams.
//!
//! stdout is kept whole up to a cap (it is the result; past the cap the run fails), stderr
//! keeps only its last bytes (it is a log). Both are checked for UTF-8 as they stream, so
//! memory stays bounded whatever the worker writes.

/// Checks that a byte stream is UTF-8 without holding it: only a split character (at most
/// 3 bytes) is carried from one chunk to the next.
#[derive(Debug, Default)]
pub struct Utf8Check {
    pending: Vec<u8>,
    invalid: bool,
}

impl Utf8Check {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.invalid || chunk.is_empty() {
            return;
        }
        let joined;
        let data = if self.pending.is_empty() {
            chunk
        } else {
            joined = [std::mem::take(&mut self.pending).as_slice(), chunk].concat();
            joined.as_slice()
        };
        if let Err(e) = std::str::from_utf8(data) {
            if e.error_len().is_some() {
                self.invalid = true;
            } else {
                self.pending = data[e.valid_up_to()..].to_vec();
            }
        }
    }

    /// Whether everything fed so far, taken as a finished stream, is UTF-8.
    pub fn is_valid(&self) -> bool {
        !self.invalid && self.pending.is_empty()
    }
}

/// stdout: the first `cap` bytes, and whether the stream went past them.
#[derive(Debug)]
pub struct CappedBuffer {
    cap: usize,
    pub bytes: Vec<u8>,
    pub total: u64,
    pub utf8: Utf8Check,
}

impl CappedBuffer {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            bytes: Vec::new(),
            total: 0,
            utf8: Utf8Check::default(),
        }
    }

    /// Keeps what fits under the cap; returns false once the stream has gone past it.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        self.total += chunk.len() as u64;
        self.utf8.feed(chunk);
        let room = self.cap.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.total <= self.cap as u64
    }
}

/// stderr: only the last `keep` bytes, plus the total length seen.
#[derive(Debug)]
pub struct TailBuffer {
    keep: usize,
    buf: Vec<u8>,
    pub total: u64,
    pub utf8: Utf8Check,
}

impl TailBuffer {
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            buf: Vec::new(),
            total: 0,
            utf8: Utf8Check::default(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        self.utf8.feed(chunk);
        self.buf.extend_from_slice(chunk);
        // Compact only when twice the size, so the copy is amortised.
        if self.buf.len() > self.keep.saturating_mul(2).max(64 * 1024) {
            let cut = self.buf.len() - self.keep;
            self.buf.drain(..cut);
        }
    }

    pub fn into_tail(mut self) -> Vec<u8> {
        if self.buf.len() > self.keep {
            let cut = self.buf.len() - self.keep;
            self.buf.drain(..cut);
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_valid() {
        let text = "héllo 日本語 🎉".as_bytes();
        for split in 0..text.len() {
            let mut check = Utf8Check::default();
            check.feed(&text[..split]);
            check.feed(&text[split..]);
            assert!(check.is_valid(), "split at {split}");
        }
    }

    #[test]
    fn invalid_and_truncated_utf8_are_caught() {
        let mut check = Utf8Check::default();
        check.feed(b"ok \xff ok");
        assert!(!check.is_valid());
        let mut truncated = Utf8Check::default();
        truncated.feed(&"é".as_bytes()[..1]);
        assert!(!truncated.is_valid());
    }

    #[test]
    fn capped_buffer_keeps_the_head_and_reports_overflow() {
        let mut buf = CappedBuffer::new(4);
        assert!(buf.push(b"ab"));
        assert!(buf.push(b"cd"));
        assert!(!buf.push(b"ef"));
        assert_eq!(buf.bytes, b"abcd");
        assert_eq!(buf.total, 6);
    }

    #[test]
    fn tail_buffer_keeps_the_last_bytes() {
        let mut tail = TailBuffer::new(3);
        for chunk in [b"abc".as_slice(), b"defg", b"h"] {
            tail.push(chunk);
        }
        assert_eq!(tail.total, 8);
        assert_eq!(tail.into_tail(), b"fgh");
        let mut big = TailBuffer::new(10);
        for _ in 0..100_000 {
            big.push(b"0123456789");
        }
        assert!(big.buf.len() <= 128 * 1024);
        assert_eq!(big.into_tail(), b"0123456789");
    }
}
