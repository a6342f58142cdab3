//! Logging: `RUST_LOG` (else the given default level), text or JSON lines.
//!
//! Every line written is exactly one line: control characters inside it (a newline in a claim
//! name that reached a message, say) are escaped on the way out, so no request can forge a log
//! line whatever a call site formats. Request values are also logged through
//! [`crate::text::Untrusted`], which bounds their length.

use std::{
    io::{self, Write},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter, prelude::*};

/// Installs the global subscriber; a second call is a no-op (tests).
pub fn init(json: bool, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry.with(fmt::layer().json().with_writer(OneLine { ansi: false })).try_init()
    } else {
        // Colour codes only for a terminal: they cost a third of each log line's formatting.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        registry.with(fmt::layer().with_ansi(ansi).with_writer(OneLine { ansi })).try_init()
    };
}

/// Writes each formatted event to stderr as one line. The fmt layer hands over a whole event
/// per `write` call, ending in its newline; any other control character is escaped (ESC kept
/// when colours are on, since they are the colour codes).
#[derive(Clone, Copy)]
struct OneLine {
    ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        *self
    }
}

impl Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        let keep = |b: u8| !b.is_ascii_control() || b == b'\t' || (self.ansi && b == 0x1b);
        let mut out = io::stderr().lock();
        if body.iter().all(|&b| keep(b)) {
            out.write_all(buf)?;
        } else {
            let mut line = Vec::with_capacity(buf.len() + 16);
            for &b in body {
                match b {
                    b'\n' => line.extend_from_slice(b"\\n"),
                    b'\r' => line.extend_from_slice(b"\\r"),
                    b if keep(b) => line.push(b),
                    b => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            if newline {
                line.push(b'\n');
            }
            out.write_all(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Lines one [`LogLimiter`] lets through per [`LIMIT_WINDOW_SECS`].
const LIMIT_BURST: u64 = 5;
/// The window of a [`LogLimiter`].
const LIMIT_WINDOW_SECS: u64 = 10;

/// Rate limit of one repeated warning (one `static` per call site): [`LIMIT_BURST`] lines per
/// window, then silence; the next line let through says how many were suppressed.
pub struct LogLimiter {
    window: AtomicU64,
    seen: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// A limiter with nothing seen yet.
    pub const fn new() -> Self {
        Self { window: AtomicU64::new(0), seen: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(suppressed since the last line)` when this line may be written.
    pub fn admit(&self) -> Option<u64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / LIMIT_WINDOW_SECS;
        if self.window.swap(now, Ordering::AcqRel) != now {
            self.seen.store(0, Ordering::Release);
        }
        if self.seen.fetch_add(1, Ordering::AcqRel) < LIMIT_BURST {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            None
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_let_through_then_lines_are_counted_until_the_next_window() {
        let limiter = LogLimiter::new();
        let admitted: Vec<_> = (0..8).map(|_| limiter.admit()).collect();
        assert_eq!(admitted[..5], [Some(0); 5]);
        assert_eq!(admitted[5..], [None; 3]);
        // A new window: the first line carries the count.
        limiter.window.store(0, Ordering::Release);
        assert_eq!(limiter.admit(), Some(3));
    }
}
