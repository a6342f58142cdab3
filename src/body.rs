//! Reading request bodies within three bounds: a size limit per body (checked against
//! Content-Length before anything is buffered), a time limit for the whole body, and a budget
//! on the sum of body bytes held by all requests of a surface at once.
//!
//! Without the budget, eight concurrent 60 MiB bodies held a gigabyte; without the time limit, a
//! body sent a byte a second held its connection and memory forever.

use std::{sync::Arc, time::Duration};

use actix_web::{HttpRequest, http::header::CONTENT_LENGTH, web};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default time limit for a whole request body to arrive (`--body-timeout`), both surfaces.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Declared or streamed size over the limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("failed to read request body: {0}")]
    Read(#[source] actix_web::error::PayloadError),
    /// The body did not arrive within the time limit.
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// Other requests' bodies already hold the surface's memory budget.
    #[error("server busy: request bodies in flight hold the budget of {budget} bytes; retry")]
    Busy {
        /// The budget.
        budget: usize,
    },
}

/// The bounds one surface (extender or webhook) reads bodies within.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Largest single body.
    pub max_bytes: usize,
    /// Time for the whole body, from the end of the request head.
    pub timeout: Duration,
    /// How long a body waits for budget before the request is refused as busy.
    pub budget_wait: Duration,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

impl BodyLimits {
    /// Bounds with a budget of `budget_bytes` shared by every clone.
    pub fn new(max_bytes: usize, budget_bytes: usize, timeout: Duration) -> Self {
        // A body the budget can never hold would wait and fail every time.
        let budget_bytes = budget_bytes.max(max_bytes).min(Semaphore::MAX_PERMITS);
        Self {
            max_bytes,
            timeout,
            budget_wait: Duration::from_secs(1),
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
        }
    }

    /// Bytes of the budget not held by any body now.
    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }

    /// Takes `bytes` of the budget, waiting up to [`Self::budget_wait`].
    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, BodyError> {
        let busy = BodyError::Busy { budget: self.budget_bytes };
        // Permits are counted in u32; a body's share is at most max_bytes, which fits.
        let n = u32::try_from(bytes).map_err(|_| BodyError::TooLarge { limit: self.max_bytes })?;
        if let Ok(p) = self.budget.clone().try_acquire_many_owned(n) {
            return Ok(p);
        }
        match tokio::time::timeout(self.budget_wait, self.budget.clone().acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(busy),
        }
    }
}

/// A body read within its [`BodyLimits`]; its bytes stay counted against the budget until it
/// is dropped, so decoding it (which borrows from it) is covered too.
pub struct Body {
    bytes: web::BytesMut,
    _held: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads the whole body within `limits`.
pub async fn read_body(req: &HttpRequest, payload: web::Payload, limits: &BodyLimits) -> Result<Body, BodyError> {
    match tokio::time::timeout(limits.timeout, read(req, payload, limits)).await {
        Ok(body) => body,
        Err(_) => Err(BodyError::Timeout(limits.timeout)),
    }
}

async fn read(req: &HttpRequest, mut payload: web::Payload, limits: &BodyLimits) -> Result<Body, BodyError> {
    let limit = limits.max_bytes;
    let declared =
        req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    // A declared length is reserved whole before reading; a streamed body reserves as it grows.
    let mut held = match declared {
        Some(0) => None,
        Some(n) => Some(limits.reserve(n).await?),
        None => None,
    };
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        let len = body.len() + chunk.len();
        if len > limit {
            return Err(BodyError::TooLarge { limit });
        }
        let reserved = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        if len > reserved {
            // Streamed (or longer than declared, which actix refuses anyway): reserve in steps of
            // at least 64 KiB so a chunked body does not touch the semaphore per chunk.
            let more = (len - reserved).max(64 * 1024).min(limit - reserved);
            let permit = limits.reserve(more).await?;
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body { bytes: body, _held: held })
}

#[cfg(test)]
mod tests {
    use actix_web::{FromRequest, test::TestRequest};

    use super::*;

    fn payload(body: &'static [u8]) -> (HttpRequest, web::Payload) {
        let (req, mut pl) = TestRequest::post().set_payload(body).to_http_parts();
        let payload = futures::executor::block_on(web::Payload::from_request(&req, &mut pl)).unwrap();
        (req, payload)
    }

    #[actix_web::test]
    async fn a_body_holds_its_bytes_of_the_budget_until_it_is_dropped() {
        let limits = BodyLimits::new(1024, 2048, Duration::from_secs(5));
        let (req, pl) = payload(&[b'x'; 1000]);
        let body = read_body(&req, pl, &limits).await.unwrap();
        assert_eq!((body.len(), limits.available()), (1000, 1048));
        drop(body);
        assert_eq!(limits.available(), 2048);
    }

    #[actix_web::test]
    async fn a_body_over_the_remaining_budget_waits_briefly_then_is_refused_as_busy() {
        let mut limits = BodyLimits::new(1024, 1024, Duration::from_secs(5));
        limits.budget_wait = Duration::from_millis(10);
        let (req, pl) = payload(&[b'x'; 1000]);
        let _held = read_body(&req, pl, &limits).await.unwrap();
        let (req, pl) = payload(&[b'y'; 100]);
        let err = read_body(&req, pl, &limits).await.err().unwrap();
        assert!(matches!(err, BodyError::Busy { budget: 1024 }), "{err}");
    }

    #[actix_web::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let limits = BodyLimits::new(10, 100, Duration::from_secs(5));
        let (req, pl) = payload(&[b'x'; 11]);
        assert!(matches!(read_body(&req, pl, &limits).await, Err(BodyError::TooLarge { limit: 10 })));
        assert_eq!(limits.available(), 100);
    }
}
