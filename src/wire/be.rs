//! Big-endian integers inside a message body, read only where the body holds them.

/// The u16 at `at`.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The u32 at `at`.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The i32 at `at`.
pub fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Writes `v` at `at` (a length field written as a placeholder before its message or value
/// was); nothing if `b` does not hold it.
pub fn patch_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(slot) = at.checked_add(4).and_then(|end| b.get_mut(at..end)) {
        slot.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_is_there() {
        let b = [0, 1, 0, 0, 0, 2, 255];
        assert_eq!(u16_at(&b, 0), Some(1));
        assert_eq!(u32_at(&b, 2), Some(2));
        assert_eq!(i32_at(&b, 3), Some(767));
        assert_eq!(u32_at(&b, 4), None);
        assert_eq!(u16_at(&b, usize::MAX), None);
        let mut b = [0u8; 6];
        patch_u32(&mut b, 1, 0x01020304);
        assert_eq!(b, [0, 1, 2, 3, 4, 0]);
        patch_u32(&mut b, 3, 9);
        assert_eq!(b, [0, 1, 2, 3, 4, 0]);
    }
}
