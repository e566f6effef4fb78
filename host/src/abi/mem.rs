//! The only code that turns a guest's `(ptr, len)` into host bytes.
//!
//! Every host function that touches guest memory goes through [`slice`] or
//! [`slice_mut`], which check the range with overflow-free arithmetic and
//! `get`: a bad range is an [`AbiError`], never a panic or an out-of-bounds
//! access. `fuzz`-style property tests in `abi/test.rs` hammer it.

use crate::error::AbiError;

/// The guest range `[ptr, ptr + len)` as host indices into a memory of
/// `memory_len` bytes. `ptr` is read as an unsigned 32-bit offset; `len`
/// must not be negative.
pub(crate) fn range(
    function: &'static str,
    memory_len: usize,
    ptr: i32,
    len: i32,
) -> Result<std::ops::Range<usize>, AbiError> {
    let bad = |why: String| AbiError {
        function,
        message: why,
    };
    let len = u32::try_from(len).map_err(|_| bad(format!("negative length {len}")))?;
    let start = u64::from(ptr as u32);
    let end = start + u64::from(len); // cannot overflow: both fit in 32 bits
    if end > memory_len as u64 {
        return Err(bad(format!(
            "out-of-bounds range: pointer {start:#x}, length {len}, but the memory is {memory_len} bytes"
        )));
    }
    // Both fit in usize: end <= memory_len.
    Ok(start as usize..end as usize)
}

/// The guest bytes `[ptr, ptr + len)` of `memory`.
pub(crate) fn slice<'m>(
    function: &'static str,
    memory: &'m [u8],
    ptr: i32,
    len: i32,
) -> Result<&'m [u8], AbiError> {
    let r = range(function, memory.len(), ptr, len)?;
    memory.get(r).ok_or_else(|| unreachable_range(function))
}

/// The guest bytes `[ptr, ptr + len)` of `memory`, writable.
pub(crate) fn slice_mut<'m>(
    function: &'static str,
    memory: &'m mut [u8],
    ptr: i32,
    len: i32,
) -> Result<&'m mut [u8], AbiError> {
    let r = range(function, memory.len(), ptr, len)?;
    memory.get_mut(r).ok_or_else(|| unreachable_range(function))
}

fn unreachable_range(function: &'static str) -> AbiError {
    AbiError {
        function,
        message: "range check disagreed with slice bounds".into(),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn in_bounds_ranges_are_exact() {
        let mem = [0u8; 16];
        assert_eq!(slice("f", &mem, 0, 16).unwrap().len(), 16);
        assert_eq!(slice("f", &mem, 16, 0).unwrap().len(), 0);
        assert_eq!(slice("f", &mem, 4, 8).unwrap().len(), 8);
    }

    #[test]
    fn out_of_bounds_and_overflowing_ranges_are_errors() {
        let mut mem = [0u8; 16];
        for (ptr, len) in [
            (0, 17),
            (16, 1),
            (17, 0),
            (-1, 1),
            (-1, 0),
            (1, i32::MAX),
            (i32::MAX, i32::MAX),
        ] {
            let err = slice("f", &mem, ptr, len).unwrap_err();
            assert!(err.message.contains("out-of-bounds"), "{ptr} {len}: {err}");
            assert!(slice_mut("f", &mut mem, ptr, len).is_err());
        }
        let err = slice("input_read", &mem, 0, -1).unwrap_err();
        assert_eq!(err.to_string(), "input_read: negative length -1");
    }

    /// Every (ptr, len) pair over a grid of edge values agrees with a
    /// reference computed in i128.
    #[test]
    fn agrees_with_reference_on_edge_values() {
        let edges = [
            0i32,
            1,
            2,
            7,
            8,
            15,
            16,
            17,
            4095,
            65535,
            65536,
            i32::MAX - 1,
            i32::MAX,
            -1,
            -2,
            i32::MIN,
        ];
        for mem_len in [0usize, 1, 16, 65536] {
            let mem = vec![0u8; mem_len];
            for &ptr in &edges {
                for &len in &edges {
                    let expect_ok =
                        len >= 0 && (ptr as u32 as i128) + (len as i128) <= mem_len as i128;
                    assert_eq!(
                        slice("f", &mem, ptr, len).is_ok(),
                        expect_ok,
                        "mem {mem_len} ptr {ptr} len {len}"
                    );
                }
            }
        }
    }
}
