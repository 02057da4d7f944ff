//! LZO1X-1 compression for protocols 2 and 3 (distcc 3.4 `compress.c`), and zstd for the
//! same bodies when both ends speak our protocol extension ([`crate::ext`]).
//!
//! The stream is raw LZO1X: no header, no uncompressed size, no checksum. The packet length
//! on the wire is the compressed size, so the receiver does not know how large the output
//! will be. distcc starts with 8× the input and doubles on overrun *without any bound*; we do
//! the same but stop at a caller-given limit, so a hostile peer cannot make us allocate
//! gigabytes from a few bytes of input.
//!
//! Compression goes through `minilzo-rs`. Decompression calls miniLZO's
//! `lzo1x_decompress_safe` (the C library that `minilzo-rs` builds and links) directly,
//! because the crate's safe wrapper does not report how many bytes were produced — and an
//! LZO stream of unknown output length is exactly what the network gives us.

use std::cell::RefCell;
use std::os::raw::c_int;

use thiserror::Error;

/// Why a compress or decompress step failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CompressError {
    #[error("LZO compression failed: {0}")]
    Compress(String),
    #[error("corrupt LZO data from the peer (error {0}); the connection is unusable")]
    Corrupt(i32),
    #[error("compressed data expands beyond {limit} bytes; refusing it")]
    TooLarge { limit: usize },
    #[error("zstd compression failed: {0}")]
    ZstdCompress(String),
    #[error("corrupt zstd data from the peer ({0}); the connection is unusable")]
    ZstdCorrupt(String),
}

/// The zstd level of the extension. Level 1 is zstd's fastest standard level: on a LAN a
/// job's bytes are cheap to send (1 Gbit/s moves a 1 MiB preprocessed source in 8 ms), so
/// every millisecond of client CPU spent compressing harder is a millisecond the build
/// waits — and the client compresses while `make -j` runs many jobs at once. At level 1
/// zstd already packs preprocessed C and object files clearly tighter than LZO1X-1 (see
/// `cargo bench -- --suite wire`) at a similar speed, and decompresses faster.
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// Compress `data` as one zstd frame. Empty input gives empty output, as [`compress`]:
/// zero bytes travel as a length-0 packet.
pub fn zstd_compress(data: &[u8]) -> Result<Vec<u8>, CompressError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    zstd::bulk::compress(data, ZSTD_LEVEL).map_err(|e| CompressError::ZstdCompress(e.to_string()))
}

/// The size a zstd frame says it unpacks to, if it says (ours always do). A peer may
/// lie: use it only as a limit, never as a promise.
pub fn zstd_declared_size(data: &[u8]) -> Option<usize> {
    zstd::zstd_safe::get_frame_content_size(data)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
}

/// Decompress zstd data from the peer, producing at most `limit` bytes. The frame's own
/// size field is only a hint for the first allocation (a peer may lie in it): the
/// decoder streams, and stops one byte past the limit.
pub fn zstd_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressError> {
    use std::io::Read;
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let hint = zstd_declared_size(data).unwrap_or(data.len().saturating_mul(4));
    let mut out = Vec::with_capacity(hint.min(limit).min(64 << 20));
    let decoder = zstd::stream::read::Decoder::with_buffer(data)
        .map_err(|e| CompressError::ZstdCorrupt(e.to_string()))?;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| CompressError::ZstdCorrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(CompressError::TooLarge { limit });
    }
    out.shrink_to_fit();
    Ok(out)
}

unsafe extern "C" {
    /// miniLZO's bounds-checked decompressor. `dst_len` is in/out: capacity on entry,
    /// bytes written on return.
    fn lzo1x_decompress_safe(
        src: *const u8,
        src_len: usize,
        dst: *mut u8,
        dst_len: *mut usize,
        wrkmem: *mut std::ffi::c_void,
    ) -> c_int;
}

const LZO_E_OK: c_int = 0;
const LZO_E_OUTPUT_OVERRUN: c_int = -5;

thread_local! {
    /// One compressor per thread: it owns 128 KiB of work memory, which we don't want to
    /// set up again for every file of a job.
    static LZO: RefCell<Option<minilzo_rs::LZO>> = const { RefCell::new(None) };
}

/// Compress `data` with LZO1X-1. Empty input gives empty output: distcc sends 0 bytes as a
/// length-0 packet with no body (an encoder would emit the 3-byte end marker).
pub fn compress(data: &[u8]) -> Result<Vec<u8>, CompressError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    LZO.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot =
                Some(minilzo_rs::LZO::init().map_err(|e| CompressError::Compress(e.to_string()))?);
        }
        match slot.as_mut() {
            Some(lzo) => lzo
                .compress(data)
                .map_err(|e| CompressError::Compress(e.to_string())),
            None => Err(CompressError::Compress("LZO not initialised".into())),
        }
    })
}

/// Decompress a raw LZO1X stream whose output size is unknown, producing at most `limit`
/// bytes. Length-0 input is the empty file (see [`compress`]).
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    // Make sure miniLZO's global init ran (it checks the ABI once per process).
    LZO.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = minilzo_rs::LZO::init().ok();
        }
    });
    // distcc's first guess is 8× the input; text compresses better than that, so we also
    // start no lower than 64 KiB, and double on overrun up to the limit.
    let mut cap = data
        .len()
        .saturating_mul(8)
        .max(64 * 1024)
        .min(limit)
        .max(1);
    loop {
        let mut out = vec![0u8; cap];
        let mut out_len = cap;
        // SAFETY: `data` and `out` are valid for their lengths; miniLZO's safe decompressor
        // never writes past `out_len` and reports how much it wrote through `out_len`.
        let rc = unsafe {
            lzo1x_decompress_safe(
                data.as_ptr(),
                data.len(),
                out.as_mut_ptr(),
                &mut out_len,
                std::ptr::null_mut(),
            )
        };
        match rc {
            LZO_E_OK => {
                // Give the guess back: a pump request of thousands of small headers would
                // otherwise hold a ≥64 KiB buffer for each of them.
                out.truncate(out_len);
                out.shrink_to_fit();
                return Ok(out);
            }
            LZO_E_OUTPUT_OVERRUN if cap < limit => {
                cap = cap.saturating_mul(2).min(limit);
            }
            LZO_E_OUTPUT_OVERRUN => return Err(CompressError::TooLarge { limit }),
            other => return Err(CompressError::Corrupt(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_bodies_hold_no_oversized_buffer() {
        let packed = compress(b"int x;\n").unwrap();
        let out = decompress(&packed, 1 << 30).unwrap();
        assert_eq!(out, b"int x;\n");
        assert!(out.capacity() < 1024, "capacity {}", out.capacity());
    }

    #[test]
    fn empty_is_empty_both_ways() {
        assert_eq!(compress(b"").unwrap(), Vec::<u8>::new());
        assert_eq!(decompress(b"", 10).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn end_marker_alone_is_an_empty_file() {
        // distcc's include server sends an empty header as the bare end-of-stream marker.
        assert_eq!(decompress(&[0x11, 0, 0], 100).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn grows_past_first_guess() {
        let data = vec![b'a'; 5_000_000];
        let packed = compress(&data).unwrap();
        assert!(packed.len() * 8 < data.len(), "needs the doubling path");
        assert_eq!(decompress(&packed, 10_000_000).unwrap(), data);
    }

    #[test]
    fn limit_is_enforced() {
        let data = vec![0u8; 1_000_000];
        let packed = compress(&data).unwrap();
        assert_eq!(
            decompress(&packed, 100_000),
            Err(CompressError::TooLarge { limit: 100_000 })
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        for junk in [
            &b"\xff\xff\xff\xff"[..],
            b"hello world",
            &[0x00; 40],
            &[0x20, 0xff],
        ] {
            assert!(decompress(junk, 1 << 20).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn decodes_distcc_fixture() {
        // p2-hello: DOTO body is LZO; the decoded object equals the written one.
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/wire-distcc-3.4"
        );
        let Ok(resp) = std::fs::read(format!("{dir}/p2-hello.resp")) else {
            panic!("fixtures missing: {dir}");
        };
        let obj = std::fs::read(format!("{dir}/p2-hello.o")).unwrap();
        let pos = resp.windows(4).position(|w| w == b"DOTO").unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&resp[pos + 4..pos + 12]).unwrap(), 16)
            .unwrap();
        let body = &resp[pos + 12..pos + 12 + len];
        assert_eq!(decompress(body, 1 << 24).unwrap(), obj);
    }

    #[test]
    fn zstd_round_trip_empty_and_limits() {
        assert_eq!(zstd_compress(b"").unwrap(), Vec::<u8>::new());
        assert_eq!(zstd_decompress(b"", 10).unwrap(), Vec::<u8>::new());
        let data = b"int x;\n".repeat(10_000);
        let packed = zstd_compress(&data).unwrap();
        assert!(packed.len() < data.len() / 20);
        assert_eq!(zstd_decompress(&packed, data.len()).unwrap(), data);
        assert_eq!(
            zstd_decompress(&packed, data.len() - 1),
            Err(CompressError::TooLarge {
                limit: data.len() - 1
            })
        );
    }

    #[test]
    fn zstd_bomb_and_garbage_are_errors() {
        // A frame that claims little but unpacks to much still stops at the limit.
        let bomb = zstd_compress(&vec![0u8; 50 << 20]).unwrap();
        assert!(bomb.len() < 10_000);
        assert!(matches!(
            zstd_decompress(&bomb, 1 << 20),
            Err(CompressError::TooLarge { .. })
        ));
        for junk in [
            &b"\xff\xff\xff\xff"[..],
            b"hello world",
            &[0x28, 0xb5, 0x2f, 0xfd, 0, 0],
        ] {
            assert!(zstd_decompress(junk, 1 << 20).is_err(), "{junk:?}");
        }
    }

    proptest! {
        #[test]
        fn zstd_round_trip_any(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            let packed = zstd_compress(&data).unwrap();
            prop_assert_eq!(zstd_decompress(&packed, 1 << 20).unwrap(), data);
        }

        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            let packed = compress(&data).unwrap();
            prop_assert_eq!(decompress(&packed, 1 << 20).unwrap(), data);
        }

        #[test]
        fn round_trip_text(s in "[a-z \n#<>.]{0,5000}") {
            let packed = compress(s.as_bytes()).unwrap();
            prop_assert_eq!(decompress(&packed, 1 << 20).unwrap(), s.into_bytes());
        }
    }
}
