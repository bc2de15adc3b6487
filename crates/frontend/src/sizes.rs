//! Transfer sizes as size-limit measures them: each file compressed on its own with
//! gzip level 9 and Brotli quality 11 (window 22, Node's default), sizes summed.

use crate::error::FrontendError;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

/// The largest single file measured (64 MiB); a larger one is refused, not read.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Raw, gzip and Brotli bytes of one file or a sum of files.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Sizes {
    pub raw: u64,
    pub gzip: u64,
    pub brotli: u64,
}

impl Sizes {
    /// Measures `bytes`.
    pub fn of(bytes: &[u8]) -> Sizes {
        Sizes {
            raw: bytes.len() as u64,
            gzip: gzip_len(bytes),
            brotli: brotli_len(bytes),
        }
    }

    /// Reads and measures a file of at most [`MAX_FILE_BYTES`].
    pub fn of_file(path: &Path) -> Result<Sizes, FrontendError> {
        let read_err = |e: std::io::Error| {
            FrontendError::Input(format!("{}: cannot read: {e}", path.display()))
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(FrontendError::Input(format!(
                "{}: larger than {} MiB, the largest file measured",
                path.display(),
                MAX_FILE_BYTES / 1024 / 1024
            )));
        }
        Ok(Sizes::of(&bytes))
    }

    pub fn add(&mut self, o: Sizes) {
        self.raw += o.raw;
        self.gzip += o.gzip;
        self.brotli += o.brotli;
    }
}

impl std::iter::Sum for Sizes {
    fn sum<I: Iterator<Item = Sizes>>(iter: I) -> Sizes {
        let mut s = Sizes::default();
        for x in iter {
            s.add(x);
        }
        s
    }
}

/// Bytes written, counted and dropped.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn gzip_len(bytes: &[u8]) -> u64 {
    let mut enc = flate2::write::GzEncoder::new(Counter(0), flate2::Compression::best());
    // Writing into a counter cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().map(|c| c.0).unwrap_or(0)
}

fn brotli_len(bytes: &[u8]) -> u64 {
    let mut out = Counter(0);
    {
        // Dropping the writer ends the stream (a flush would add an empty block).
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 11, 22);
        let _ = w.write_all(bytes);
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_and_brotli_sizes_are_those_of_real_streams() {
        let text = "export const a = 1;\n".repeat(500);
        let s = Sizes::of(text.as_bytes());
        assert_eq!(s.raw, text.len() as u64);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(text.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(s.gzip, gz.len() as u64);
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
            w.write_all(text.as_bytes()).unwrap();
        }
        assert_eq!(s.brotli, out.len() as u64);
        let mut back = String::new();
        brotli::Decompressor::new(&out[..], 4096)
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
        assert!(s.brotli < s.gzip && s.gzip < s.raw);
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let e = Sizes::of_file(Path::new("/nonexistent/a.js")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/a.js"));
    }
}
