//! Limits on the images Atelier looks inside, in one place. A few kilobytes of PNG can declare
//! 22000×22000 pixels and take gigabytes to decode, so every image is judged by its header at
//! the door (uploads, `data:` inputs, fetched inputs), every decode runs with the same limits,
//! and the CPU-heavy work runs on a bounded pool.
use std::io::Cursor;
use std::sync::Arc;

use image::{DynamicImage, ImageReader};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// `[images]`: the largest image we accept and how much a decode may allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes one decode may allocate (8192×8192 RGBA is 256 MiB).
    pub max_alloc_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_alloc_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the image is {width}×{height} pixels; at most {max_width}×{max_height} are accepted")]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
}

impl ImageLimits {
    /// The image's dimensions, read from its header only (nothing is decoded), when they are
    /// within the limits.
    pub fn check(&self, bytes: &[u8]) -> Result<(u32, u32), ImageError> {
        let (width, height) = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|error| ImageError::Unreadable(error.to_string()))?
            .into_dimensions()
            .map_err(|error| ImageError::Unreadable(error.to_string()))?;
        if width > self.max_width || height > self.max_height {
            return Err(ImageError::TooLarge {
                width,
                height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        Ok((width, height))
    }

    /// Decodes `bytes`, refusing from the header (before allocating) what the limits exclude.
    pub fn decode(&self, bytes: &[u8]) -> Result<DynamicImage, ImageError> {
        self.check(bytes)?;
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|error| ImageError::Unreadable(error.to_string()))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc_bytes);
        reader.limits(limits);
        reader
            .decode()
            .map_err(|error| ImageError::Unreadable(error.to_string()))
    }
}

/// Runs CPU-heavy image work on the blocking pool, at most `size` jobs at once, so a burst of
/// large images queues instead of taking every core and all the memory.
#[derive(Clone)]
pub struct ImagePool {
    permits: Arc<Semaphore>,
}

impl ImagePool {
    /// `size` 0: one job per core.
    pub fn new(size: usize) -> Self {
        let size = match size {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            size => size,
        };
        Self {
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|error| error.to_string())?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        image::GrayImage::new(width, height)
            .write_to(&mut bytes, image::ImageFormat::Png)
            .unwrap();
        bytes.into_inner()
    }

    #[test]
    fn oversized_images_are_refused_from_their_header() {
        let limits = ImageLimits::default();
        assert_eq!(limits.check(&png(30, 20)), Ok((30, 20)));
        // 10000×10000 of one grey compresses to well under a megabyte.
        let bomb = png(10_000, 10_000);
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        assert!(matches!(
            limits.check(&bomb),
            Err(ImageError::TooLarge {
                width: 10_000,
                height: 10_000,
                ..
            })
        ));
        assert!(matches!(
            limits.decode(&bomb),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            limits.check(b"not an image"),
            Err(ImageError::Unreadable(_))
        ));
    }

    #[test]
    fn a_decode_is_bounded_by_the_allocation_limit() {
        let tight = ImageLimits {
            max_alloc_bytes: 1024,
            ..ImageLimits::default()
        };
        assert!(tight.decode(&png(100, 100)).is_err());
        assert!(ImageLimits::default().decode(&png(100, 100)).is_ok());
    }

    #[tokio::test]
    async fn the_pool_runs_jobs() {
        let pool = ImagePool::new(1);
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
    }
}
