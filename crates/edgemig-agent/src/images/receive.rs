//! An image arriving from another site (`image push`): written to
//! `.partial-<hex>` in the cache directory as its chunks arrive, then
//! verified against its digest and admitted to the cache. A push that was
//! cut leaves the partial file; the next push of the same image resumes
//! at its last whole chunk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use edgemig_api::images::DIGEST_PREFIX;

use super::stream::{CHUNK, Chunk};
use super::{CachedImage, ImageCache, ImageError, ImageMeta, io};

/// An image being received.
#[derive(Debug)]
pub struct PartialImage {
    cache: ImageCache,
    meta: ImageMeta,
    /// Length the finished file has.
    file_len: u64,
    path: PathBuf,
    file: File,
    written: u64,
}

impl ImageCache {
    fn partial_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix(DIGEST_PREFIX).unwrap_or_default();
        self.dir().join(format!(".partial-{hex}"))
    }

    /// Bytes of `digest` already received here by an earlier, cut push:
    /// where the next push resumes (a whole number of chunks).
    pub fn partial_bytes(&self, digest: &str) -> u64 {
        std::fs::metadata(self.partial_path(digest)).map_or(0, |m| m.len() - m.len() % CHUNK as u64)
    }

    /// Starts (or resumes at `offset`, which must be what
    /// [`ImageCache::partial_bytes`] says) receiving `meta`'s image, a file
    /// of `file_len` bytes.
    pub fn receive(
        &self,
        meta: ImageMeta,
        file_len: u64,
        offset: u64,
    ) -> Result<PartialImage, ImageError> {
        if !edgemig_api::images::is_digest(&meta.digest) {
            return Err(ImageError::Invalid(format!(
                "Invalid digest {:?}",
                meta.digest
            )));
        }
        if !super::is_valid_name(&meta.name) || !matches!(meta.format.as_str(), "raw" | "qcow2") {
            return Err(ImageError::Invalid(format!(
                "Invalid image name {:?} or format {:?}",
                meta.name, meta.format
            )));
        }
        let have = self.partial_bytes(&meta.digest);
        if offset != 0 && offset != have {
            return Err(ImageError::Invalid(format!(
                "Cannot resume image {} at byte {offset}: {have} bytes are here",
                meta.digest
            )));
        }
        if offset > file_len {
            return Err(ImageError::Invalid(format!(
                "Offset {offset} is past the end of image {} ({file_len} bytes)",
                meta.digest
            )));
        }
        std::fs::create_dir_all(self.dir())
            .map_err(io(format!("Cannot create {}", self.dir().display())))?;
        let path = self.partial_path(&meta.digest);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(format!("Cannot open {}", path.display())))?;
        file.set_len(offset)
            .and_then(|()| file.seek(SeekFrom::Start(offset)).map(|_| ()))
            .map_err(io(format!("Cannot prepare {}", path.display())))?;
        Ok(PartialImage {
            cache: self.clone(),
            meta,
            file_len,
            path,
            file,
            written: offset,
        })
    }
}

impl PartialImage {
    /// Appends one chunk.
    pub fn write(&mut self, chunk: &Chunk) -> Result<(), ImageError> {
        let len = chunk.len() as u64;
        if self.written + len > self.file_len {
            return Err(ImageError::Invalid(format!(
                "Image {} is longer than announced ({} bytes)",
                self.meta.digest, self.file_len
            )));
        }
        // A hole extends the file without writing (it stays sparse), so
        // the partial file's length is always what was received.
        let done = match chunk {
            Chunk::Data(d) => self.file.write_all(d),
            Chunk::Hole(n) => self
                .file
                .seek(SeekFrom::Current(i64::try_from(*n).unwrap_or(0)))
                .and_then(|_| self.file.set_len(self.written + len)),
        };
        done.map_err(io(format!("Cannot write {}", self.path.display())))?;
        self.written += len;
        Ok(())
    }

    /// Bytes of the file received so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks length and digest, then moves the image into the cache. A
    /// file whose digest does not match is deleted.
    pub fn finish(mut self) -> Result<CachedImage, ImageError> {
        if self.written != self.file_len {
            return Err(ImageError::Invalid(format!(
                "Image {} ended after {} of {} bytes",
                self.meta.digest, self.written, self.file_len
            )));
        }
        let path = self.path.clone();
        let hashed = (|| -> std::io::Result<String> {
            self.file.set_len(self.file_len)?;
            self.file.sync_all()?;
            self.file.seek(SeekFrom::Start(0))?;
            let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = self.file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
            }
            Ok(hash
                .finish()
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect())
        })()
        .map_err(io(format!("Cannot read back {}", path.display())))?;
        let got = format!("{DIGEST_PREFIX}{hashed}");
        if got != self.meta.digest {
            let _ = std::fs::remove_file(&path);
            return Err(ImageError::Invalid(format!(
                "Image arrived damaged: its digest is {got}, {} was sent",
                self.meta.digest
            )));
        }
        if let Some(existing) = self.cache.get(&self.meta.digest) {
            let _ = std::fs::remove_file(&path);
            return Ok(existing);
        }
        self.cache.admit(&path, &self.meta)
    }
}

#[cfg(test)]
mod tests {
    use edgemig_api::images::Firmware;

    use super::*;
    use crate::images::stream::{Decoder, encode};

    fn digest(bytes: &[u8]) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{DIGEST_PREFIX}{hex}")
    }

    fn meta(content: &[u8]) -> ImageMeta {
        ImageMeta {
            digest: digest(content),
            name: "pushed".into(),
            format: "raw".into(),
            virtual_bytes: content.len() as u64,
            firmware: Firmware::Uefi,
        }
    }

    fn chunks(content: &[u8]) -> Vec<Chunk> {
        let mut d = Decoder::default();
        for raw in content.chunks(CHUNK) {
            d.push(&bytes::Bytes::from(encode(raw).unwrap()));
        }
        std::iter::from_fn(|| d.next_chunk().unwrap()).collect()
    }

    #[test]
    fn a_cut_push_resumes_and_the_digest_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(tmp.path().join("images"));
        let mut content: Vec<u8> = (0..3 * CHUNK + 1000).map(|i| (i % 253) as u8).collect();
        content[CHUNK..2 * CHUNK].fill(0);
        let meta = meta(&content);
        let parts = chunks(&content);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[1], Chunk::Hole(CHUNK));
        // First attempt: two chunks, then the connection is cut.
        let mut first = cache
            .receive(meta.clone(), content.len() as u64, 0)
            .unwrap();
        first.write(&parts[0]).unwrap();
        first.write(&parts[1]).unwrap();
        drop(first);
        assert_eq!(cache.partial_bytes(&meta.digest), 2 * CHUNK as u64);
        assert!(cache.get(&meta.digest).is_none(), "not in the cache yet");
        // Resuming anywhere but there is refused.
        assert!(
            cache
                .receive(meta.clone(), content.len() as u64, 7)
                .is_err()
        );
        let mut second = cache
            .receive(meta.clone(), content.len() as u64, 2 * CHUNK as u64)
            .unwrap();
        second.write(&parts[2]).unwrap();
        second.write(&parts[3]).unwrap();
        let image = second.finish().unwrap();
        assert_eq!(std::fs::read(&image.path).unwrap(), content);
        assert_eq!(image.meta.firmware, Firmware::Uefi);
        assert_eq!(cache.partial_bytes(&meta.digest), 0, "partial file gone");
    }

    #[test]
    fn damaged_or_long_images_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(tmp.path().join("images"));
        let content = vec![7u8; 5000];
        let mut wrong = meta(&content);
        wrong.digest = digest(b"something else");
        let mut rx = cache.receive(wrong.clone(), 5000, 0).unwrap();
        rx.write(&Chunk::Data(content.clone())).unwrap();
        let err = rx.finish().unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(cache.get(&wrong.digest).is_none());
        assert_eq!(cache.partial_bytes(&wrong.digest), 0);
        let mut rx = cache.receive(meta(&content), 100, 0).unwrap();
        assert!(rx.write(&Chunk::Data(content)).is_err());
    }
}
