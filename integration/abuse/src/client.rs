//! A small HTTP/1.1 client over std `TcpStream` and rustls, with what attacks need and general
//! clients hide: exact bytes on the wire, any (or no) Content-Type, keep-alive or a fresh
//! connection per request, a deadline on every exchange, and bounded response buffering (a body
//! is counted in full but only its first bytes are kept).
//!
//! Connections are in `stream`, reading responses in `response`.

use std::{
    io::{self, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{ClientConfig, ClientConnection, StreamOwned, pki_types::ServerName};

pub use crate::response::{KEEP, Response, read_response};
use crate::stream::{Stream, set_deadline, timed_out};

/// Where requests go: an address, over TLS when `tls` is set (server name `localhost`).
#[derive(Clone)]
pub struct Endpoint {
    /// Socket address.
    pub addr: SocketAddr,
    /// Client TLS settings; `None` is plain HTTP.
    pub tls: Option<Arc<ClientConfig>>,
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
    use std::{io::Read, net::TcpListener};

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
