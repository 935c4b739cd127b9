//! Length-delimited frames for streams: a 4-byte big-endian length, then that many bytes of one
//! encoded message.
//!
//! Decoding is pure: give it the bytes you have and it answers with a message and how many bytes it
//! used, or with how many more bytes it needs. An oversized length is refused as soon as the 4-byte
//! prefix is seen, before any payload is buffered.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, DecodeError};
use crate::error::ErrorCode;

/// Bytes in the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Result of trying to decode one frame from a buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded<T> {
    /// Not enough bytes yet: at least `needed` more are required.
    Incomplete {
        /// Lower bound of the bytes still missing.
        needed: usize,
    },
    /// One message, which used the first `consumed` bytes of the buffer.
    Complete {
        /// The message.
        message: T,
        /// Bytes used, prefix included.
        consumed: usize,
    },
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the stream allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The stream's limit.
        max: usize,
    },
    /// A zero-length frame: never valid, every message has at least one byte.
    #[error("empty frame")]
    Empty,
    /// The payload is not a valid message.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
}

impl FrameError {
    /// The protocol error code this failure closes the stream or connection with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::FRAME_TOO_LARGE,
            FrameError::Empty | FrameError::Malformed(_) => ErrorCode::MALFORMED,
        }
    }
}

/// Encodes `message` as one frame, appending it to `out`. Refuses a message larger than `max_len`
/// so a sender finds out before its peer has to.
pub fn encode_frame_into<T: Serialize>(
    message: &T,
    max_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    codec::encode_into(message, out);
    let len = out.len() - start - LEN_PREFIX;
    if len > max_len {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let prefix = u32::try_from(len).expect("max_len fits in u32");
    out[start..start + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// Encodes `message` as one frame.
pub fn encode_frame<T: Serialize>(message: &T, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(message, max_len, &mut out)?;
    Ok(out)
}

/// Tries to decode one frame from the start of `buf`.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max_len: usize,
) -> Result<Decoded<T>, FrameError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(Decoded::Incomplete {
            needed: LEN_PREFIX - buf.len(),
        });
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let total = LEN_PREFIX + len;
    if buf.len() < total {
        return Ok(Decoded::Incomplete {
            needed: total - buf.len(),
        });
    }
    let message = codec::decode(&buf[LEN_PREFIX..total])?;
    Ok(Decoded::Complete {
        message,
        consumed: total,
    })
}

/// A buffer that collects stream bytes and hands out whole messages.
///
/// Feed it whatever the transport delivered with [`FrameReader::push`], then call
/// [`FrameReader::next_message`] until it returns `Ok(None)`. It holds at most one partial frame (bounded by
/// `max_len`) plus the last chunk pushed.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    max_len: usize,
}

impl FrameReader {
    /// A reader for a stream whose frames may not exceed `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_len,
        }
    }

    /// Changes the largest frame accepted from here on (a stream that changes protocol after its
    /// first frame); bytes already buffered are kept.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Appends bytes received from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a returned message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, if the buffer holds one.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match decode_frame(&self.buf, self.max_len)? {
            Decoded::Incomplete { .. } => Ok(None),
            Decoded::Complete { message, consumed } => {
                self.buf.drain(..consumed);
                if self.buf.is_empty() {
                    // Nothing is kept between frames: a control stream is idle almost always,
                    // and a core holds very many of them.
                    self.buf = Vec::new();
                }
                Ok(Some(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_between_frames_holds_no_memory() {
        let frame = encode_frame(&"hello".to_string(), 1024).unwrap();
        let mut reader = FrameReader::new(1024);
        reader.push(&frame[..3]);
        assert_eq!(reader.next_message::<String>().unwrap(), None);
        reader.push(&frame[3..]);
        reader.push(&frame[..2]);
        assert_eq!(reader.next_message::<String>().unwrap().unwrap(), "hello");
        assert_eq!(reader.buffered(), 2, "the next frame's start is kept");
        reader.push(&frame[2..]);
        assert_eq!(reader.next_message::<String>().unwrap().unwrap(), "hello");
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[test]
    fn round_trip_and_incomplete() {
        let frame = encode_frame(&("hello".to_string(), 7u32), 1024).unwrap();
        for cut in 0..frame.len() {
            match decode_frame::<(String, u32)>(&frame[..cut], 1024).unwrap() {
                Decoded::Incomplete { needed } => {
                    assert!(needed >= 1 && needed <= frame.len() - cut)
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert_eq!(
            decode_frame::<(String, u32)>(&frame, 1024).unwrap(),
            Decoded::Complete {
                message: ("hello".to_string(), 7),
                consumed: frame.len()
            }
        );
    }

    #[test]
    fn oversized_prefix_refused_before_payload() {
        let mut buf = (2_000_000u32).to_be_bytes().to_vec();
        buf.push(1);
        assert_eq!(
            decode_frame::<u32>(&buf, 1_000_000),
            Err(FrameError::TooLarge {
                len: 2_000_000,
                max: 1_000_000
            })
        );
    }

    #[test]
    fn sender_refuses_oversized_message() {
        let big = vec![7u8; 100];
        let mut out = vec![1, 2, 3];
        let err = encode_frame_into(&big, 50, &mut out).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 50, .. }));
        assert_eq!(
            out,
            vec![1, 2, 3],
            "a refused frame leaves the buffer as it was"
        );
    }

    #[test]
    fn empty_and_malformed_frames() {
        assert_eq!(
            decode_frame::<u32>(&[0, 0, 0, 0], 10),
            Err(FrameError::Empty)
        );
        // A bool must be 0 or 1.
        let err = decode_frame::<bool>(&[0, 0, 0, 1, 9], 10).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MALFORMED);
        // Trailing garbage inside a frame is malformed too.
        let err = decode_frame::<u8>(&[0, 0, 0, 2, 1, 1], 10).unwrap_err();
        assert!(matches!(
            err,
            FrameError::Malformed(DecodeError::TrailingBytes(1))
        ));
    }

    #[test]
    fn reader_splits_a_byte_stream() {
        let mut stream = Vec::new();
        for i in 0..10u32 {
            encode_frame_into(&i, 64, &mut stream).unwrap();
        }
        let mut reader = FrameReader::new(64);
        let mut got = Vec::new();
        for byte in stream {
            reader.push(&[byte]);
            while let Some(v) = reader.next_message::<u32>().unwrap() {
                got.push(v);
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(reader.buffered(), 0);
    }
}
