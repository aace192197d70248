//! Growing a buffer that may hold plaintext without leaving a copy of it in freed memory.
//!
//! `Vec` and `String` grow by reallocating: the allocator may copy the contents to a new
//! block and free the old one as it was, plaintext included. Every buffer that can hold
//! plaintext and grow calls [`ReserveWiping::reserve_wiping`] before the write that would
//! grow it; a write of at most the reserved length then cannot reallocate.

use std::io;

use zeroize::Zeroize;

/// Growth that zeroizes the old allocation before it is freed.
///
/// Not part of the stable API (the `ae` tool uses it for its output buffers).
#[doc(hidden)]
pub trait ReserveWiping {
    /// Makes room for at least `additional` more bytes. When the spare capacity is too
    /// small, the contents move to a new allocation (at least twice the old capacity, so
    /// repeated calls stay amortized O(1) per byte) and the whole old allocation is
    /// zeroized before it is freed. Otherwise nothing happens.
    fn reserve_wiping(&mut self, additional: usize);
}

/// The capacity to grow to: enough for `additional` more, at least double.
fn grown(len: usize, capacity: usize, additional: usize) -> usize {
    len.saturating_add(additional)
        .max(capacity.saturating_mul(2).min(isize::MAX as usize))
        .max(64)
}

impl ReserveWiping for Vec<u8> {
    #[inline]
    fn reserve_wiping(&mut self, additional: usize) {
        if self.capacity() - self.len() < additional {
            grow_vec(self, additional);
        }
    }
}

impl ReserveWiping for String {
    #[inline]
    fn reserve_wiping(&mut self, additional: usize) {
        if self.capacity() - self.len() < additional {
            grow_string(self, additional);
        }
    }
}

#[cold]
#[inline(never)]
fn grow_vec(v: &mut Vec<u8>, additional: usize) {
    let mut new = Vec::with_capacity(grown(v.len(), v.capacity(), additional));
    new.extend_from_slice(v);
    // `Vec::zeroize` wipes the spare capacity too: the whole old allocation.
    v.zeroize();
    *v = new;
}

#[cold]
#[inline(never)]
fn grow_string(s: &mut String, additional: usize) {
    let mut new = String::with_capacity(grown(s.len(), s.capacity(), additional));
    new.push_str(s);
    s.zeroize();
    *s = new;
}

/// An [`io::Write`] that appends to a `Vec<u8>` through [`ReserveWiping`], for writers
/// such as `serde_json::to_writer` whose writes cannot be sized in advance.
pub(crate) struct WipingWriter<'a>(pub(crate) &'a mut Vec<u8>);

impl io::Write for WipingWriter<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.reserve_wiping(buf.len());
        self.0.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_keeping_the_contents_and_reserves_enough() {
        let mut v = b"abc".to_vec();
        v.shrink_to_fit();
        v.reserve_wiping(1000);
        assert_eq!(&v[..], b"abc");
        assert!(v.capacity() >= 1003);
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        v.extend_from_slice(&[1; 1000]);
        assert_eq!(
            (v.as_ptr(), v.capacity()),
            (ptr, cap),
            "no reallocation after"
        );

        let mut s = String::from("zoë");
        s.shrink_to_fit();
        s.reserve_wiping(10);
        assert_eq!(s, "zoë");
        assert!(s.capacity() >= s.len() + 10);
    }

    #[test]
    fn no_growth_when_the_capacity_suffices() {
        let mut v = Vec::with_capacity(100);
        v.extend_from_slice(b"abc");
        let ptr = v.as_ptr();
        v.reserve_wiping(97);
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, 100));
    }

    #[test]
    fn doubles_so_that_many_small_reserves_stay_cheap() {
        let mut v: Vec<u8> = Vec::new();
        let mut moves = 0;
        for i in 0..100_000u32 {
            let cap = v.capacity();
            v.reserve_wiping(1);
            moves += usize::from(v.capacity() != cap);
            v.push(i as u8);
        }
        assert!(moves <= 12, "{moves} moves");
    }

    #[test]
    fn the_writer_appends_everything() {
        use std::io::Write;
        let mut v = b"x".to_vec();
        serde_json::to_writer(WipingWriter(&mut v), "a\u{1}\"b").unwrap();
        WipingWriter(&mut v).write_all(b"!").unwrap();
        assert_eq!(&v[..], br#"x"a\u0001\"b"!"#);
    }
}
