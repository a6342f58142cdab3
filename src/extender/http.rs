//! HTTP envelope of the extender: read the body (size-limited), decode only needed fields,
//! run the pure decision against cached state, encode. No API or driver call happens here.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::header::CONTENT_TYPE, web};
use tracing::{Instrument, Span, instrument};

use super::{
    Candidate, Error, Indexed, Inputs,
    encode::{self, Kept},
    filter,
    limits::{Deadline, ExtenderLimits},
    prioritize::{self, Scores},
    wire::{self, ExtenderArgs, HostScore, RequestNode},
};
use crate::{
    body::read_body,
    cluster::{ClusterView, pod::PodFacts},
    driver::Driver,
    events::{EventSink, PodRef},
    metrics::Metrics,
    tls::client_auth::ClientAuth,
};

/// Shared state of the extender endpoints.
#[derive(Clone)]
pub struct ExtenderState {
    /// Cached cluster objects.
    pub cluster: ClusterView,
    /// The storage driver.
    pub driver: Arc<dyn Driver>,
    /// Where pod events go.
    pub events: EventSink,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// What one call may cost.
    pub limits: ExtenderLimits,
    /// Which callers may call (`--extender-client-ca`); `None`: anyone who can connect.
    pub client_auth: Option<ClientAuth>,
}

/// Registers `/filter` and `/prioritize` (POST).
pub fn configure(state: ExtenderState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .route("/filter", web::post().to(filter_handler))
            .route("/prioritize", web::post().to(prioritize_handler));
    }
}

#[instrument(skip_all, fields(verb = "filter", pod, nodes, kept))]
async fn filter_handler(
    state: web::Data<ExtenderState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    serve(state, req, payload, "filter", filter_body).await
}

#[instrument(skip_all, fields(verb = "prioritize", pod, nodes))]
async fn prioritize_handler(
    state: web::Data<ExtenderState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    serve(state, req, payload, "prioritize", prioritize_body).await
}

/// [`filter_body`] or [`prioritize_body`].
type Decide = fn(&ExtenderState, &[u8], Deadline) -> Result<Vec<u8>, Error>;

/// The envelope of both verbs: authenticate, read the body within its limits, then decide on
/// the extender's own threads (never on the HTTP workers, which also serve admission reviews)
/// before the call's deadline.
async fn serve(
    state: web::Data<ExtenderState>,
    req: HttpRequest,
    payload: web::Payload,
    verb: &'static str,
    decide: Decide,
) -> Result<HttpResponse, Error> {
    let _timer = state.metrics.extender.time(verb);
    let result = async {
        if state.client_auth.as_ref().is_some_and(|auth| !auth.verified(&req)) {
            return Err(Error::Unauthenticated);
        }
        let _slot = crate::server::conn_slot(&req).ok_or(Error::ConnectionBusy)?;
        let body = read_body(&req, payload, &state.limits.body).await?;
        let deadline = Deadline::after(state.limits.timeout);
        let turn = state.limits.worker(deadline).await.ok_or(Error::Expired { verb })?;
        let st = state.clone();
        let span = Span::current();
        let work = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            // Queued past its deadline: the scheduler has given up on this call already.
            if deadline.passed() {
                return Err(Error::Expired { verb });
            }
            span.in_scope(|| decide(&st, &body, deadline))
        });
        match work.instrument(Span::current()).await {
            Ok(answer) => answer.map_err(|e| match e {
                Error::Expired { .. } => Error::Expired { verb },
                e => e,
            }),
            // A decision that panicked: the panic was logged; the call fails, the server goes on.
            Err(_) => Err(Error::Expired { verb }),
        }
    }
    .await;
    match result {
        Ok(body) => Ok(HttpResponse::Ok().insert_header((CONTENT_TYPE, "application/json")).body(body)),
        Err(e) => {
            state.metrics.extender.failed(verb, e.metric_label());
            Err(e)
        }
    }
}

/// Decodes a request and hands its pod and nodes to `decide`, with the request's raw nodes in
/// full-node mode. Candidates take their driver matches from the inventory's node index: in
/// names mode every fact comes from there (no cache read per node); in full-node mode the
/// index answers for a node whose addresses are the cached Node's.
fn with_request<R>(
    state: &ExtenderState,
    body: &[u8],
    decide: impl FnOnce(&PodFacts, &[Candidate<'_>], Option<&[RequestNode<'_>]>) -> Result<R, Error>,
) -> Result<R, Error> {
    // Validated as UTF-8 once here, so names and raw nodes are then borrowed without checking
    // each string again; a body that is not UTF-8 gets serde_json's own error, as before.
    let args = wire::with_max_nodes(state.limits.max_nodes, || match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<ExtenderArgs<'_>>(text),
        Err(_) => serde_json::from_slice(body),
    });
    let mut args = args.map_err(|e| {
        if wire::is_too_many_nodes(&e) { Error::TooManyNodes(state.limits.max_nodes) } else { Error::Decode(e) }
    })?;
    let pod = args.pod.take().ok_or(Error::MissingPod)?;
    let span = Span::current();
    if !span.is_disabled() {
        span.record("pod", crate::text::Untrusted(&pod.display_name()).to_string());
    }
    // Published by the index builder, never built here. Without one (no driver nodes, or the
    // builder has not caught up with a new inventory) decisions read the cache directly.
    let index = state.driver.nodes().ok().and_then(|inventory| inventory.node_index(&state.cluster));
    let index = index.as_deref();
    if let Some(list) = &args.nodes {
        let candidates: Vec<Candidate<'_>> = list
            .items
            .iter()
            .map(|n| {
                let addresses: Vec<(&str, &str)> = n.addresses.iter().map(|(k, a)| (k.as_ref(), a.as_ref())).collect();
                let indexed = index.and_then(|ix| {
                    let cached = ix.get(&n.name).filter(|c| c.has_addresses(addresses.iter().copied()))?;
                    Some(Indexed { inventory: ix.inventory(), matches: cached.matches(), from_cache: false })
                });
                Candidate { name: &n.name, addresses, storage_unschedulable: n.storage_unschedulable, indexed }
            })
            .collect();
        span.record("nodes", candidates.len());
        return decide(&pod, &candidates, Some(&list.items));
    }
    let names = args.node_names.as_deref().ok_or(Error::MissingNodes)?;
    span.record("nodes", names.len());
    let Some(index) = index else {
        let cached: Vec<_> = names.iter().map(|n| state.cluster.node(n)).collect();
        let candidates: Vec<Candidate<'_>> =
            names.iter().zip(&cached).map(|(name, node)| Candidate::from_cache(name, node.as_deref())).collect();
        return decide(&pod, &candidates, None);
    };
    let indexed: Vec<_> = names.iter().map(|name| index.get(name)).collect();
    // A Node added since the index was built is read from the cache.
    let added: Vec<_> =
        names.iter().zip(&indexed).map(|(name, ix)| ix.is_none().then(|| state.cluster.node(name)).flatten()).collect();
    let candidates: Vec<Candidate<'_>> = names
        .iter()
        .zip(indexed.iter().zip(&added))
        .map(|(name, (ix, node))| match ix {
            Some(cached) => Candidate {
                name,
                addresses: Vec::new(),
                storage_unschedulable: cached.storage_unschedulable(),
                indexed: Some(Indexed { inventory: index.inventory(), matches: cached.matches(), from_cache: true }),
            },
            None => Candidate::from_cache(name, node.as_deref()),
        })
        .collect();
    decide(&pod, &candidates, None)
}

/// Decodes, decides and encodes one filter request.
pub fn filter_body(state: &ExtenderState, body: &[u8], deadline: Deadline) -> Result<Vec<u8>, Error> {
    with_request(state, body, |pod, candidates, raw| {
        let inputs = Inputs { pod, cluster: &state.cluster, driver: state.driver.as_ref(), deadline };
        let decision = filter::filter(&inputs, candidates).map_err(|_| Error::Expired { verb: "filter" })?;
        Span::current().record("kept", decision.kept.len());
        if let Some(ev) = decision.event {
            state.events.send(pod_ref(pod), ev);
        }
        let name = |i: usize| candidates[i].name;
        let mut size = 128;
        let reasons = |v: Vec<(usize, String)>, size: &mut usize| {
            v.into_iter()
                .map(|(i, why)| {
                    *size += name(i).len() + why.len() + 8;
                    (name(i), why)
                })
                .collect()
        };
        let failed_nodes = reasons(decision.failed, &mut size);
        let failed_and_unresolvable_nodes = reasons(decision.unresolvable, &mut size);
        let kept = match raw {
            Some(items) => {
                let kept: Vec<_> = decision.kept.iter().map(|&i| items[i].raw).collect();
                size += kept.iter().map(|r| r.get().len() + 1).sum::<usize>();
                Kept::Nodes(kept)
            }
            None => {
                let kept: Vec<&str> = decision.kept.iter().map(|&i| name(i)).collect();
                size += kept.iter().map(|n| n.len() + 3).sum::<usize>();
                Kept::Names(kept)
            }
        };
        tracing::debug!(failed = ?failed_nodes, unresolvable = ?failed_and_unresolvable_nodes, "filtered");
        encode::filter_result(&kept, &failed_nodes, &failed_and_unresolvable_nodes, size).map_err(Error::Encode)
    })
}

/// Decodes, decides and encodes one prioritize request.
pub fn prioritize_body(state: &ExtenderState, body: &[u8], deadline: Deadline) -> Result<Vec<u8>, Error> {
    with_request(state, body, |pod, candidates, _| {
        let inputs = Inputs { pod, cluster: &state.cluster, driver: state.driver.as_ref(), deadline };
        let Scores { scores, event } =
            prioritize::prioritize(&inputs, candidates).map_err(|_| Error::Expired { verb: "prioritize" })?;
        if let Some(ev) = event {
            state.events.send(pod_ref(pod), ev);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let list: Vec<HostScore<'_>> =
                candidates.iter().zip(&scores).map(|(c, &score)| HostScore { host: c.name, score }).collect();
            tracing::debug!(scores = ?list, "prioritized");
        }
        encode::host_scores(candidates.iter().zip(scores).map(|(c, score)| (c.name, score))).map_err(Error::Encode)
    })
}

fn pod_ref(pod: &PodFacts) -> PodRef {
    PodRef { namespace: pod.metadata.namespace.clone(), name: pod.metadata.name.clone(), uid: pod.metadata.uid.clone() }
}
