//! Attack 7, HTTP/2 limits: connects with ALPN h2 to the HTTPS port, reads the server's
//! SETTINGS, then opens [`BURST`] streams at once on the one connection. Without a bound, one
//! connection may open streams without end, each holding a request body and a handler.
//!
//! actix-http gives a server no way to advertise SETTINGS_MAX_CONCURRENT_STREAMS, so stork
//! enforces the bound per request (`--max-requests-per-connection`, default 100): asserted is
//! that the burst is answered whole, with some streams refused (503) rather than all served.
//! Whether a limit is advertised is reported as a figure.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Context;
use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use rustls::pki_types::ServerName;
use serde_json::json;
use stork_bench::stork::Extra;
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::{fixtures, harness::Ctx, report::Outcome};

/// What the server said over HTTP/2.
struct Seen {
    alpn: Option<String>,
    /// `usize::MAX` when the server did not advertise a limit (h2's initial value).
    max_streams: usize,
    status: u16,
    /// Answers to [`BURST`] concurrent `/filter` streams, by status or error.
    burst: BTreeMap<String, usize>,
}

/// Streams opened at once on one connection, past any sane limit (a figure: how the server
/// copes when the limit is not advertised).
const BURST: usize = 150;

/// Sends one request on a new stream; its status.
fn stream(send: &mut SendRequest<Bytes>, path: &str, body: Vec<u8>) -> anyhow::Result<ResponseFuture> {
    let req =
        http::Request::post(format!("https://localhost{path}")).header("content-type", "application/json").body(())?;
    let (answer, mut data) = send.send_request(req, false)?;
    data.send_data(body.into(), true)?;
    Ok(answer)
}

/// Handshakes, sends one review (so the server's SETTINGS are surely in), reads the limit, then
/// opens [`BURST`] streams at once.
async fn settings(addr: std::net::SocketAddr, config: rustls::ClientConfig) -> anyhow::Result<Seen> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp).await?;
    let alpn = tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
    if alpn.as_deref() != Some("h2") {
        return Ok(Seen { alpn, max_streams: 0, status: 0, burst: BTreeMap::new() });
    }
    let (send, connection) = h2::client::handshake(tls).await.context("HTTP/2 handshake")?;
    // Driven here rather than spawned: the limit is read from the connection between the phases.
    let mut connection = std::pin::pin!(connection);
    let (mut send, status) = driven(connection.as_mut(), async {
        let mut send = send.ready().await?;
        let first = stream(&mut send, "/mutate", fixtures::pod_review("abuse-h2"))?;
        let status = first.await.context("HTTP/2 answer")?.status().as_u16();
        Ok((send, status))
    })
    .await?;
    let max_streams = connection.max_concurrent_send_streams();
    // Room for every answer to be buffered before it is read (h2 guards against floods of
    // small DATA frames with a budget that follows this window).
    connection.set_target_window_size(16 << 20);
    let burst = driven(connection.as_mut(), async {
        let mut answers = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            send = send.ready().await?;
            answers.push(stream(&mut send, "/filter", fixtures::FILTER_ARGS.as_bytes().to_vec())?);
        }
        let mut burst = BTreeMap::new();
        for answer in answers {
            let seen = match answer.await {
                Ok(r) => {
                    let status = r.status().as_u16().to_string();
                    let mut body = r.into_body();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    status
                }
                Err(e) => format!("error: {e}"),
            };
            *burst.entry(seen).or_default() += 1;
        }
        Ok(burst)
    })
    .await
    .unwrap_or_else(|e| BTreeMap::from([(format!("{e:#}"), BURST)]));
    Ok(Seen { alpn, max_streams, status, burst })
}

/// Runs `work` while driving the connection it needs.
async fn driven<T>(
    connection: std::pin::Pin<&mut Connection<TlsStream<tokio::net::TcpStream>, Bytes>>,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        done = work => done,
        ended = connection => anyhow::bail!("the HTTP/2 connection ended first: {ended:?}"),
    }
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    let target = ctx.start_seed("h2", &Extra::default())?;
    let mut config = (*ctx.certs.client).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let seen = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), settings(target.https.addr, config)).await });
    match seen {
        Err(_) => out.fail("no HTTP/2 answer within 10 s"),
        Ok(Err(e)) => out.fail(format!("HTTP/2 over TLS failed: {e:#}")),
        Ok(Ok(seen)) => {
            out.figure("alpn", seen.alpn.clone().unwrap_or_else(|| "none".into()));
            out.check(seen.alpn.as_deref() == Some("h2"), || format!("ALPN h2 not negotiated (got {:?})", seen.alpn));
            if seen.alpn.as_deref() == Some("h2") {
                let shown =
                    if seen.max_streams == usize::MAX { "not advertised".into() } else { seen.max_streams.to_string() };
                out.figure("max_concurrent_streams", shown);
                out.figure("h2_mutate_status", seen.status);
                out.figure(format!("{BURST}_concurrent_filter_streams"), json!(seen.burst));
                let answered: usize = seen.burst.iter().filter(|(k, _)| k.parse::<u16>().is_ok()).map(|(_, n)| n).sum();
                out.check(answered == BURST, || {
                    format!("{answered} of {BURST} concurrent streams were answered: {:?}", seen.burst)
                });
                out.check(seen.burst.contains_key("503"), || {
                    format!(
                        "{BURST} concurrent streams on one connection were all served, none refused: {:?}",
                        seen.burst
                    )
                });
            }
        }
    }
    target.finish(ctx, out, "the HTTP/2 check");
    Ok(())
}
