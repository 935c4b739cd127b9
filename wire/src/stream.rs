//! Frames over quinn streams (feature `quinn`): the thin async shell around [`crate::frame`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorCode;
use crate::frame::{FrameError, FrameReader, encode_frame_into};

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Why a frame could not be received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The bytes broke the protocol.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed.
    // quinn's error and its causes are in the message, and deliberately not a `source`: with
    // both, `{:#}` printed "connection lost: connection lost: reset by peer".
    #[error("stream read failed: {}", with_causes(.0))]
    Read(quinn::ReadError),
    /// The peer finished the stream in the middle of a frame.
    #[error("stream ended in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
}

impl RecvError {
    /// The code to close with, when the failure is the peer's protocol error.
    pub fn protocol_code(&self) -> Option<ErrorCode> {
        match self {
            RecvError::Frame(e) => Some(e.code()),
            RecvError::Truncated(_) => Some(ErrorCode::MALFORMED),
            RecvError::Read(_) => None,
        }
    }
}

/// Why a frame could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is larger than the stream's limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed.
    // As `RecvError::Read`: the causes are in the message, not a `source`.
    #[error("stream write failed: {}", with_causes(.0))]
    Write(quinn::WriteError),
}

impl From<quinn::ReadError> for RecvError {
    fn from(error: quinn::ReadError) -> Self {
        RecvError::Read(error)
    }
}

impl From<quinn::WriteError> for SendError {
    fn from(error: quinn::WriteError) -> Self {
        SendError::Write(error)
    }
}

/// `error: cause: cause's cause...`: an error with every cause, on one line.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// The receiving half of a framed stream.
#[derive(Debug)]
pub struct FramedRecv {
    stream: quinn::RecvStream,
    reader: FrameReader,
}

impl FramedRecv {
    /// Wraps a stream whose frames may not exceed `max_len` bytes.
    pub fn new(stream: quinn::RecvStream, max_len: usize) -> Self {
        Self {
            stream,
            reader: FrameReader::new(max_len),
        }
    }

    /// The next message; `Ok(None)` when the peer finished the stream cleanly between frames.
    /// Cancel-safe: bytes already read stay buffered for the next call.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RecvError> {
        loop {
            if let Some(message) = self.reader.next_message()? {
                return Ok(Some(message));
            }
            match self.stream.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.reader.push(&chunk.bytes),
                None if self.reader.buffered() == 0 => return Ok(None),
                None => return Err(RecvError::Truncated(self.reader.buffered())),
            }
        }
    }

    /// The underlying stream.
    pub fn stream_mut(&mut self) -> &mut quinn::RecvStream {
        &mut self.stream
    }

    /// Changes the frame limit from the next frame on (the stream changes protocol); bytes
    /// already read stay buffered.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.reader.set_max_len(max_len);
    }
}

/// The sending half of a framed stream.
#[derive(Debug)]
pub struct FramedSend {
    stream: quinn::SendStream,
    max_len: usize,
    buf: Vec<u8>,
}

impl FramedSend {
    /// Wraps a stream whose frames may not exceed `max_len` bytes.
    pub fn new(stream: quinn::SendStream, max_len: usize) -> Self {
        Self {
            stream,
            max_len,
            buf: Vec::new(),
        }
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), SendError> {
        self.buf.clear();
        encode_frame_into(message, self.max_len, &mut self.buf)?;
        self.stream.write_all(&self.buf).await?;
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Finishes the stream: no more frames.
    pub fn finish(&mut self) {
        // Only fails if already finished or reset; either way nothing more can be sent.
        let _ = self.stream.finish();
    }

    /// The underlying stream.
    pub fn stream_mut(&mut self) -> &mut quinn::SendStream {
        &mut self.stream
    }

    /// Changes the frame limit for the next frames (the stream changes protocol).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_told_once_with_its_cause() {
        let lost = RecvError::from(quinn::ReadError::ConnectionLost(
            quinn::ConnectionError::Reset,
        ));
        assert_eq!(
            lost.to_string(),
            "stream read failed: connection lost: reset by peer"
        );
        // Nothing more down the chain, so `{:#}` prints the same once.
        assert!(std::error::Error::source(&lost).is_none());

        let stopped = SendError::from(quinn::WriteError::Stopped(quinn::VarInt::from_u32(7)));
        assert_eq!(
            stopped.to_string(),
            "stream write failed: sending stopped by peer: error 7"
        );
    }
}
