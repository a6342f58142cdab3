//! Reading one HTTP/1.1 response off a [`Stream`]: the head parsed with `httparse`, the body
//! by Content-Length, chunked or until the close, counted in full but kept only up to a limit.

use std::{
    io::{self, Read},
    time::Instant,
};

use crate::stream::{Stream, timed_out};

/// Bytes of a response body kept by default (the rest is only counted).
pub const KEEP: usize = 1 << 20;

/// A response: status, headers, the first bytes of the body and its full length.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The first bytes of the body (de-chunked), at most what the reader was asked to keep.
    pub body: Vec<u8>,
    /// The whole body's length.
    pub body_len: u64,
    /// The server closes the connection after this response.
    pub close: bool,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one response, keeping at most `keep` body bytes; every read ends by `deadline`.
pub fn read_response(stream: &mut Stream, keep: usize, deadline: Instant) -> io::Result<Response> {
    let mut r = Reader { stream, deadline, buf: Vec::with_capacity(4096), pos: 0 };
    let (status, headers, head_len) = loop {
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut parsed);
        match resp.parse(&r.buf).map_err(io::Error::other)? {
            httparse::Status::Complete(n) => {
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect::<Vec<_>>();
                break (resp.code.unwrap_or(0), headers, n);
            }
            httparse::Status::Partial if r.fill()? == 0 => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response"));
            }
            httparse::Status::Partial => {}
        }
    };
    r.pos = head_len;
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_ascii_lowercase());
    let close = find("connection").is_some_and(|v| v.contains("close"));
    let mut body = Body { kept: Vec::new(), len: 0, keep };
    if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        r.chunked(&mut body)?;
    } else if let Some(n) = find("content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        r.exact(n, &mut body)?;
    } else if status >= 200 && status != 204 && status != 304 {
        r.until_closed(&mut body)?;
    }
    Ok(Response { status, headers, body: body.kept, body_len: body.len, close })
}

struct Body {
    kept: Vec<u8>,
    len: u64,
    keep: usize,
}

impl Body {
    fn push(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let room = self.keep.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }
}

/// Buffered reading over a stream: `buf[pos..]` is read but not consumed.
struct Reader<'s> {
    stream: &'s mut Stream,
    deadline: Instant,
    buf: Vec<u8>,
    pos: usize,
}

impl Reader<'_> {
    /// Reads more; 0 at the end of the stream (a TLS peer closing without close_notify included).
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        self.stream.set_deadline(self.deadline)?;
        let n = match self.stream.read(&mut chunk) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            other => other.map_err(timed_out)?,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn exact(&mut self, mut n: u64, body: &mut Body) -> io::Result<()> {
        while n > 0 {
            if self.pos == self.buf.len() && self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "response body cut short"));
            }
            let take = (self.buf.len() - self.pos).min(usize::try_from(n).unwrap_or(usize::MAX));
            body.push(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    fn until_closed(&mut self, body: &mut Body) -> io::Result<()> {
        body.push(&self.buf[self.pos..]);
        self.pos = self.buf.len();
        while self.fill()? > 0 {
            body.push(&self.buf[self.pos..]);
            self.pos = self.buf.len();
        }
        Ok(())
    }

    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(eol) = self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.pos..self.pos + eol]).into_owned();
                self.pos += eol + 2;
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunked body cut short"));
            }
        }
    }

    fn chunked(&mut self, body: &mut Body) -> io::Result<()> {
        loop {
            let size = self.line()?;
            let size = u64::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {size:?}: {e}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.exact(size, body)?;
            self.line()?;
        }
    }
}
