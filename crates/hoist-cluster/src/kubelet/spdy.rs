//! SPDY/3.1 framing, as much as `kubectl port-forward` (moby/spdystream) needs: control
//! frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS,
//! WINDOW_UPDATE) and DATA frames. Header blocks are one zlib stream per direction with
//! the SPDY/3 preset dictionary. No flow control: spdystream neither sends nor honours
//! WINDOW_UPDATE.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1).
const DICTIONARY: &[u8] = include_bytes!("spdy3_dictionary.bin");

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const FLAG_FIN: u8 = 1;
/// Frames larger than this are refused (kubectl sends at most 32 KiB of data per frame).
const MAX_FRAME: usize = 1 << 24;

/// One frame off the wire.
#[derive(Debug)]
pub enum Frame {
    Control {
        kind: u16,
        flags: u8,
        data: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Frame> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).await?;
    let flags = h[4];
    let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
    if len >= MAX_FRAME {
        return Err(std::io::Error::other("SPDY frame too large"));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    if h[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([h[0] & 0x7f, h[1]]);
        if version != 3 {
            return Err(std::io::Error::other(format!(
                "SPDY version {version} is not supported (only 3)"
            )));
        }
        Ok(Frame::Control {
            kind: u16::from_be_bytes([h[2], h[3]]),
            flags,
            data,
        })
    } else {
        Ok(Frame::Data {
            stream: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            flags,
            data,
        })
    }
}

pub fn control(kind: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&[0x80, 3]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

pub fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut d = stream.to_be_bytes().to_vec();
    d.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &d)
}

/// The stream id at the start of a SYN_STREAM/SYN_REPLY/RST_STREAM/HEADERS body.
pub fn stream_id(data: &[u8]) -> Option<u32> {
    data.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Header (de)compression state of one connection.
pub struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
}

impl HeaderCodec {
    pub fn new() -> std::io::Result<Self> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .map_err(|e| bad(format!("zlib dictionary: {e}")))?;
        Ok(Self {
            inflate: Decompress::new(true),
            deflate,
        })
    }

    /// Decodes one header block into (lower-case name, value) pairs; values holding
    /// several NUL-separated entries are kept as they are.
    pub fn decode(&mut self, block: &[u8]) -> std::io::Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(block.len() * 4 + 256);
        let mut pos = 0;
        for _ in 0..1024 {
            let before = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(&block[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - before) as usize;
            match r {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| bad(format!("SPDY header dictionary: {e}")))?;
                }
                Err(e) => return Err(bad(format!("SPDY header block: {e}"))),
                Ok(_) if pos >= block.len() && out.len() < out.capacity() => {
                    return parse_headers(&out);
                }
                Ok(_) => {
                    if out.len() > 1 << 20 {
                        return Err(bad("SPDY header block over 1 MiB"));
                    }
                    out.reserve(out.capacity().max(4096));
                }
            }
        }
        Err(bad("SPDY header block does not decompress"))
    }

    pub fn encode(&mut self, headers: &[(&str, &str)]) -> std::io::Result<Vec<u8>> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            for s in [k, v] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut pos = 0;
        for _ in 0..1024 {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| bad(format!("compressing SPDY headers: {e}")))?;
            pos += (self.deflate.total_in() - before) as usize;
            if pos >= raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(256));
        }
        Err(bad("SPDY header block does not compress"))
    }
}

fn parse_headers(raw: &[u8]) -> std::io::Result<Vec<(String, String)>> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> std::io::Result<&[u8]> {
        let s = raw
            .get(pos..pos + n)
            .ok_or_else(|| bad("truncated SPDY header block"))?;
        pos += n;
        Ok(s)
    };
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = be(take(4)?);
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = be(take(4)?);
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_across_a_shared_zlib_stream() {
        let mut a = HeaderCodec::new().unwrap();
        let mut b = HeaderCodec::new().unwrap();
        for i in 0..3 {
            let port = format!("{}", 80 + i);
            let block = a
                .encode(&[("streamtype", "data"), ("port", &port)])
                .unwrap();
            let h = b.decode(&block).unwrap();
            assert_eq!(
                h,
                vec![
                    ("streamtype".to_string(), "data".to_string()),
                    ("port".to_string(), port)
                ]
            );
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut wire = control(PING, 0, &7u32.to_be_bytes());
        wire.extend(data(5, FLAG_FIN, b"hi"));
        let mut r = &wire[..];
        match read_frame(&mut r).await.unwrap() {
            Frame::Control { kind, data, .. } => {
                assert_eq!((kind, data), (PING, 7u32.to_be_bytes().to_vec()))
            }
            f => panic!("unexpected {f:?}"),
        }
        match read_frame(&mut r).await.unwrap() {
            Frame::Data {
                stream,
                flags,
                data,
            } => assert_eq!((stream, flags, data), (5, FLAG_FIN, b"hi".to_vec())),
            f => panic!("unexpected {f:?}"),
        }
    }
}
