//! Reading terminal recordings: asciicast v2 text (a JSON header line, then one JSON array per
//! event), as core writes it — compressed as it is written (a zstd stream, `.cast.zst`), or plain
//! for recordings made before compression.
//!
//! Core flushes a recording every half second and whenever the session is idle, so a crash loses
//! at most that much, and may leave the zstd frame unfinished and the last event cut in the
//! middle: [`open`] gets everything before the cut. Core's writer is
//! `tether_core::recording::Recorder`; this is the one reader (the CLI's `tty play`, core's
//! tests).

use std::io::Read;

/// A recording as asciicast v2 text, compressed or not (recordings made before compression
/// are plain): the reader decompresses a `.cast.zst` stream; a stream cut short (core stopped
/// mid-session) yields everything before the cut, then ends.
pub fn open(mut file: impl Read + 'static) -> std::io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let head = std::io::Cursor::new(magic[..got].to_vec());
    let whole = head.chain(file);
    let text: Box<dyn Read> =
        if got == 4 && u32::from_le_bytes(magic) == zstd::zstd_safe::MAGICNUMBER {
            Box::new(Truncated(zstd::stream::read::Decoder::new(whole)?))
        } else {
            Box::new(whole)
        };
    Ok(Box::new(WholeLines {
        text: std::io::BufReader::new(text),
        line: Vec::new(),
        at: 0,
    }))
}

/// Only whole lines (whole events): a recording cut short (a crash, a full disk) may end in the
/// middle of one, which is left out.
struct WholeLines<R> {
    text: std::io::BufReader<R>,
    line: Vec<u8>,
    at: usize,
}

impl<R: Read> Read for WholeLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        if self.at == self.line.len() {
            self.line.clear();
            self.at = 0;
            self.text.read_until(b'\n', &mut self.line)?;
            if self.line.last() != Some(&b'\n') {
                self.line.clear();
                return Ok(0);
            }
        }
        let n = buf.len().min(self.line.len() - self.at);
        buf[..n].copy_from_slice(&self.line[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A decoder whose input may stop mid-frame: that end is the end of the text.
struct Truncated<R>(R);

impl<R: Read> Read for Truncated<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(bytes: Vec<u8>) -> String {
        let mut out = String::new();
        open(std::io::Cursor::new(bytes))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_recording_cut_short_reads_up_to_the_cut() {
        // A plain file cut in the middle of an event: the whole events before it.
        let text = "{\"version\":2}\n[0.1,\"o\",\"a\"]\n[0.2,\"o\",\"b";
        assert_eq!(
            read_all(text.as_bytes().to_vec()),
            "{\"version\":2}\n[0.1,\"o\",\"a\"]\n"
        );
        // A zstd stream whose frame was never finished (core died), flushed after the first
        // event, with half of the next one after the flush.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder
            .write_all(b"{\"version\":2}\n[0.1,\"o\",\"before the crash\"]\n")
            .unwrap();
        encoder.flush().unwrap();
        let flushed = encoder.get_ref().len();
        encoder.write_all(b"[0.2,\"o\",\"lo").unwrap();
        encoder.flush().unwrap();
        let mut cut = encoder.get_ref().clone();
        assert!(cut.len() > flushed);
        assert_eq!(
            read_all(cut.clone()),
            "{\"version\":2}\n[0.1,\"o\",\"before the crash\"]\n"
        );
        // And cut in the middle of a compressed block: what decodes before it.
        cut.truncate(flushed - 1);
        assert!(read_all(cut).len() <= "{\"version\":2}\n[0.1,\"o\",\"before the crash\"]\n".len());
    }

    #[test]
    fn plain_recordings_of_before_are_read_as_they_are() {
        let text = "{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"a\"]\n";
        assert_eq!(read_all(text.as_bytes().to_vec()), text);
        assert_eq!(read_all(Vec::new()), "");
    }

    #[test]
    fn compressed_recordings_are_decompressed() {
        let text = "{\"version\":2}\n[0.5,\"o\",\"a\"]\n".repeat(100);
        let compressed = zstd::encode_all(text.as_bytes(), 3).unwrap();
        assert_eq!(&compressed[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        assert_eq!(read_all(compressed), text);
    }
}
