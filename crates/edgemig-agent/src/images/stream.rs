//! The wire format of an image push: the image file cut into chunks of
//! [`CHUNK`] bytes, each sent as one frame `[u32 wire length][u32 raw
//! length][payload]` (big endian). The payload is one zstd frame of the
//! chunk, or nothing when the chunk is all zeros (a hole, written back as a
//! hole). Chunks are independent, so a push cut halfway resumes at any
//! chunk boundary.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the file per frame.
pub const CHUNK: usize = 1 << 20;
/// zstd level of the frames (fast; images compress well at any level).
const LEVEL: i32 = 3;
/// Frame header: wire length and raw length.
const HEADER: usize = 8;

/// Errors of the image stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A frame's header is impossible.
    #[error("Corrupt image stream: {0}")]
    Corrupt(&'static str),
    /// zstd could not compress or decompress a chunk.
    #[error("Cannot (de)compress an image chunk")]
    Zstd(#[source] std::io::Error),
}

/// One chunk as a frame.
pub fn encode(raw: &[u8]) -> Result<Vec<u8>, StreamError> {
    let payload = if raw.iter().all(|b| *b == 0) {
        Vec::new()
    } else {
        zstd::bulk::compress(raw, LEVEL).map_err(StreamError::Zstd)?
    };
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&u32::try_from(raw.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// A decoded chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// These bytes.
    Data(Vec<u8>),
    /// This many zero bytes.
    Hole(usize),
}

impl Chunk {
    /// Bytes of the file it stands for.
    pub fn len(&self) -> usize {
        match self {
            Self::Data(d) => d.len(),
            Self::Hole(n) => *n,
        }
    }

    /// Whether it stands for no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Cuts a byte stream back into chunks, whatever the pieces it arrives in.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// Adds bytes that arrived.
    pub fn push(&mut self, bytes: &Bytes) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete chunk, if one arrived whole.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, StreamError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let wire = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let raw = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        let (wire, raw) = (wire as usize, raw as usize);
        if raw > CHUNK || raw == 0 {
            return Err(StreamError::Corrupt("chunk size out of range"));
        }
        if wire > zstd::zstd_safe::compress_bound(CHUNK) {
            return Err(StreamError::Corrupt("frame larger than a compressed chunk"));
        }
        if self.buf.len() < HEADER + wire {
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let payload = self.buf.split_to(wire);
        if wire == 0 {
            return Ok(Some(Chunk::Hole(raw)));
        }
        let data = zstd::bulk::decompress(&payload, raw).map_err(StreamError::Zstd)?;
        if data.len() != raw {
            return Err(StreamError::Corrupt("chunk shorter than announced"));
        }
        Ok(Some(Chunk::Data(data)))
    }

    /// Whether bytes of an incomplete frame are left over.
    pub fn has_leftover(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_survive_any_split_and_zeros_travel_as_holes() {
        let data: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
        let zeros = vec![0u8; 4096];
        let mut wire = encode(&data).unwrap();
        let hole = encode(&zeros).unwrap();
        assert_eq!(hole.len(), HEADER, "a hole has no payload");
        wire.extend_from_slice(&hole);
        assert!(wire.len() < data.len() / 4, "text-like data compresses");
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for piece in wire.chunks(7777) {
            decoder.push(&Bytes::copy_from_slice(piece));
            while let Some(chunk) = decoder.next_chunk().unwrap() {
                out.push(chunk);
            }
        }
        assert!(!decoder.has_leftover());
        assert_eq!(out, vec![Chunk::Data(data), Chunk::Hole(4096)]);
    }

    #[test]
    fn corrupt_frames_are_refused_not_trusted() {
        let mut decoder = Decoder::default();
        let mut frame = Vec::new();
        frame.extend_from_slice(&10u32.to_be_bytes());
        frame.extend_from_slice(&(u32::try_from(CHUNK).unwrap() + 1).to_be_bytes());
        decoder.push(&Bytes::from(frame));
        assert!(matches!(decoder.next_chunk(), Err(StreamError::Corrupt(_))));
        let mut decoder = Decoder::default();
        let mut frame = Vec::new();
        frame.extend_from_slice(&4u32.to_be_bytes());
        frame.extend_from_slice(&100u32.to_be_bytes());
        frame.extend_from_slice(b"junk");
        decoder.push(&Bytes::from(frame));
        assert!(matches!(decoder.next_chunk(), Err(StreamError::Zstd(_))));
    }
}
