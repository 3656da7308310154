//! How many status streams are open, bounded by `http.max_streams`: a place is taken when a
//! stream opens and given back when it is dropped, however it ends.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::error::ApiError;

/// Open streams, bounded by `http.max_streams`.
pub struct StreamSlots {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One open stream's place; freed when the stream is dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    pub fn take(&self) -> Result<Slot, ApiError> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(self.open.clone())),
            Err(_) => Err(ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "too many status streams are open; retry later",
            )),
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}
