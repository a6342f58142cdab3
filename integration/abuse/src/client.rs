//! A small HTTP/1.1 client over std `TcpStream` and rustls, with what attacks need and general
//! clients hide: exact bytes on the wire, any (or no) Content-Type, keep-alive or a fresh
//! connection per request, a deadline on every exchange, and bounded response buffering (a body
//! is counted in full but only its first bytes are kept).

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{ClientConfig, ClientConnection, StreamOwned, pki_types::ServerName};

/// Bytes of a response body kept by default (the rest is only counted).
pub const KEEP: usize = 1 << 20;

/// Where requests go: an address, over TLS when `tls` is set (server name `localhost`).
#[derive(Clone)]
pub struct Endpoint {
    /// Socket address.
    pub addr: SocketAddr,
    /// Client TLS settings; `None` is plain HTTP.
    pub tls: Option<Arc<ClientConfig>>,
}

/// An open connection, TLS handshake done.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref(),
        }
    }

    /// See [`set_deadline`].
    pub fn set_deadline(&self, deadline: Instant) -> io::Result<()> {
        set_deadline(self.tcp(), deadline)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

impl Endpoint {
    /// Connects and, for TLS, completes the handshake, all before `deadline`.
    pub fn connect(&self, deadline: Instant) -> io::Result<Stream> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let tcp = TcpStream::connect_timeout(&self.addr, left).map_err(timed_out)?;
        tcp.set_nodelay(true)?;
        let mut stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        };
        if let Stream::Tls(s) = &mut stream {
            while s.conn.is_handshaking() {
                set_deadline(&s.sock, deadline)?;
                s.conn.complete_io(&mut s.sock).map_err(timed_out)?;
            }
        }
        Ok(stream)
    }

    /// One request on a fresh connection (`Connection: close`), answered before `timeout`.
    pub fn exchange(&self, req: &Request<'_>, timeout: Duration) -> io::Result<Response> {
        let deadline = Instant::now() + timeout;
        let mut stream = self.connect(deadline)?;
        send(&mut stream, req, true, deadline)?;
        read_response(&mut stream, KEEP, deadline)
    }
}

/// A request as written on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Content-Type header; `None` sends none.
    pub content_type: Option<&'a str>,
    /// Body; its length is the Content-Length.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// `POST path` with a JSON body.
    pub fn post(path: &'a str, body: &'a [u8]) -> Self {
        Self { method: "POST", path, content_type: Some("application/json"), body }
    }

    /// `GET path`.
    pub fn get(path: &'a str) -> Self {
        Self { method: "GET", path, content_type: None, body: b"" }
    }
}

/// The head of a request (everything before the body).
pub fn head(req: &Request<'_>, close: bool) -> String {
    let content_type = req.content_type.map(|t| format!("Content-Type: {t}\r\n")).unwrap_or_default();
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\n{content_type}Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        req.method,
        req.path,
        req.body.len()
    )
}

/// Writes a whole request before `deadline`.
pub fn send(stream: &mut Stream, req: &Request<'_>, close: bool, deadline: Instant) -> io::Result<()> {
    let head = head(req, close);
    for chunk in std::iter::once(head.as_bytes()).chain(req.body.chunks(256 << 10)) {
        stream.set_deadline(deadline)?;
        stream.write_all(chunk).map_err(timed_out)?;
    }
    stream.flush().map_err(timed_out)
}

/// Read and write timeouts so that the next call does not block past `deadline`; an error once
/// it has passed. Set before every call: a timeout bounds one call, not a loop of them.
pub fn set_deadline(tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    tcp.set_read_timeout(Some(left))?;
    tcp.set_write_timeout(Some(left))
}

/// A socket timeout (`WouldBlock` on Linux) as the deadline it is.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
        }
        _ => e,
    }
}

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

/// A keep-alive connection to one endpoint, reopened when the server closes it.
pub struct Conn {
    endpoint: Endpoint,
    stream: Option<Stream>,
}

impl Conn {
    /// Not connected until the first request.
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint, stream: None }
    }

    /// Sends `req` and reads its response before `timeout`. A reused connection that fails
    /// before any response (the server closed it while idle) is retried once on a fresh one.
    pub fn request(&mut self, req: &Request<'_>, keep: usize, timeout: Duration) -> io::Result<Response> {
        let deadline = Instant::now() + timeout;
        let reused = self.stream.is_some();
        match self.try_request(req, keep, deadline) {
            Err(e) if reused && Instant::now() < deadline && is_stale(&e) => self.try_request(req, keep, deadline),
            other => other,
        }
    }

    fn try_request(&mut self, req: &Request<'_>, keep: usize, deadline: Instant) -> io::Result<Response> {
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => self.endpoint.connect(deadline)?,
        };
        send(&mut stream, req, false, deadline)?;
        let resp = read_response(&mut stream, keep, deadline)?;
        if !resp.close {
            self.stream = Some(stream);
        }
        Ok(resp)
    }
}

/// Errors of a connection the server had already closed.
fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// Serves `reply` once on a local port and returns the endpoint.
    fn server(reply: &'static [u8]) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            s.write_all(reply).unwrap();
        });
        Endpoint { addr, tls: None }
    }

    #[test]
    fn a_chunked_body_is_counted_whole_and_kept_up_to_the_limit() {
        let ep = server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
        let mut stream = ep.connect(Instant::now() + Duration::from_secs(5)).unwrap();
        send(&mut stream, &Request::get("/"), true, Instant::now() + Duration::from_secs(5)).unwrap();
        let resp = read_response(&mut stream, 5, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!((resp.status, resp.body.as_slice(), resp.body_len), (200, &b"abcde"[..], 7));
    }

    #[test]
    fn a_body_without_length_runs_to_the_close_and_headers_are_lowercased() {
        let ep = server(b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nConnection: close\r\n\r\nlater");
        let resp = ep.exchange(&Request::get("/"), Duration::from_secs(5)).unwrap();
        assert_eq!((resp.status, resp.body.as_slice(), resp.close), (503, &b"later"[..], true));
        assert_eq!(resp.header("retry-after"), Some("1"));
    }
}
