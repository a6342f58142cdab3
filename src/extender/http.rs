//! HTTP envelope of the extender: read the body (size-limited), decode only needed fields,
//! run the pure decision against cached state, encode. No API or driver call happens here.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::header::CONTENT_TYPE, web};
use k8s_openapi::api::core::v1::Node;
use tracing::{Span, instrument};

use super::{
    Candidate, Error, Inputs, MAX_BODY_BYTES, filter,
    prioritize::{self, Scores},
    wire::{ExtenderArgs, FilterResult, HostPriority, RequestNode, ResponseNodeList},
};
use crate::{
    body::read_body,
    cluster::{ClusterView, pod::PodFacts},
    driver::Driver,
    events::{EventSink, PodRef},
    metrics::Metrics,
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
    let _timer = state.metrics.extender.time("filter");
    let result = async {
        let body = read_body(&req, payload, MAX_BODY_BYTES).await?;
        filter_body(&state, &body)
    }
    .await;
    result.inspect_err(|e| state.metrics.extender.failed("filter", e.metric_label()))
}

#[instrument(skip_all, fields(verb = "prioritize", pod, nodes))]
async fn prioritize_handler(
    state: web::Data<ExtenderState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let _timer = state.metrics.extender.time("prioritize");
    let result = async {
        let body = read_body(&req, payload, MAX_BODY_BYTES).await?;
        prioritize_body(&state, &body)
    }
    .await;
    result.inspect_err(|e| state.metrics.extender.failed("prioritize", e.metric_label()))
}

/// Nodes of a request in either mode, with the cached Node objects that names mode borrows from.
enum RequestNodes<'a> {
    Full(Vec<RequestNode<'a>>),
    Names(&'a [String], Vec<Option<Arc<Node>>>),
}

impl<'a> RequestNodes<'a> {
    fn new(args: &'a mut ExtenderArgs<'a>, cluster: &ClusterView) -> Result<Self, Error> {
        if let Some(list) = args.nodes.take() {
            Ok(Self::Full(list.items))
        } else if let Some(names) = &args.node_names {
            Ok(Self::Names(names, names.iter().map(|n| cluster.node(n)).collect()))
        } else {
            Err(Error::MissingNodes)
        }
    }

    fn candidates(&self) -> Vec<Candidate<'_>> {
        match self {
            Self::Full(items) => items
                .iter()
                .map(|n| Candidate {
                    name: &n.name,
                    addresses: n.addresses.iter().map(|(k, a)| (k.as_ref(), a.as_ref())).collect(),
                    storage_unschedulable: n.storage_unschedulable,
                })
                .collect(),
            Self::Names(names, cached) => {
                names.iter().zip(cached).map(|(name, node)| Candidate::from_cache(name, node.as_deref())).collect()
            }
        }
    }
}

/// Decodes, decides and encodes one filter request.
pub fn filter_body(state: &ExtenderState, body: &[u8]) -> Result<HttpResponse, Error> {
    let mut args: ExtenderArgs<'_> = serde_json::from_slice(body).map_err(Error::Decode)?;
    let pod = args.pod.take().ok_or(Error::MissingPod)?;
    let nodes = RequestNodes::new(&mut args, &state.cluster)?;
    let candidates = nodes.candidates();
    let span = Span::current();
    span.record("pod", pod.display_name()).record("nodes", candidates.len());

    let inputs = Inputs { pod: &pod, cluster: &state.cluster, driver: state.driver.as_ref() };
    let decision = filter::filter(&inputs, &candidates);
    span.record("kept", decision.kept.len());
    if let Some(ev) = decision.event {
        state.events.send(pod_ref(&pod), ev);
    }
    let name = |i: usize| candidates[i].name;
    let reasons = |v: Vec<(usize, String)>| v.into_iter().map(|(i, why)| (name(i), why)).collect();
    let result = FilterResult {
        nodes: match &nodes {
            RequestNodes::Full(items) => Some(ResponseNodeList {
                metadata: serde_json::Map::new(),
                items: decision.kept.iter().map(|&i| items[i].raw).collect(),
            }),
            RequestNodes::Names(..) => None,
        },
        node_names: match &nodes {
            RequestNodes::Names(..) => Some(decision.kept.iter().map(|&i| name(i)).collect()),
            RequestNodes::Full(_) => None,
        },
        failed_nodes: reasons(decision.failed),
        failed_and_unresolvable_nodes: reasons(decision.unresolvable),
        error: String::new(),
    };
    tracing::debug!(failed = ?result.failed_nodes, unresolvable = ?result.failed_and_unresolvable_nodes, "filtered");
    json_response(&result)
}

/// Decodes, decides and encodes one prioritize request.
pub fn prioritize_body(state: &ExtenderState, body: &[u8]) -> Result<HttpResponse, Error> {
    let mut args: ExtenderArgs<'_> = serde_json::from_slice(body).map_err(Error::Decode)?;
    let pod = args.pod.take().ok_or(Error::MissingPod)?;
    let nodes = RequestNodes::new(&mut args, &state.cluster)?;
    let candidates = nodes.candidates();
    Span::current().record("pod", pod.display_name()).record("nodes", candidates.len());

    let inputs = Inputs { pod: &pod, cluster: &state.cluster, driver: state.driver.as_ref() };
    let Scores { scores, event } = prioritize::prioritize(&inputs, &candidates);
    if let Some(ev) = event {
        state.events.send(pod_ref(&pod), ev);
    }
    let list: Vec<HostPriority> =
        candidates.iter().zip(scores).map(|(c, score)| HostPriority { host: c.name.to_string(), score }).collect();
    tracing::debug!(scores = ?list, "prioritized");
    json_response(&list)
}

fn json_response<T: serde::Serialize>(value: &T) -> Result<HttpResponse, Error> {
    let body = serde_json::to_vec(value).map_err(Error::Encode)?;
    Ok(HttpResponse::Ok().insert_header((CONTENT_TYPE, "application/json")).body(body))
}

fn pod_ref(pod: &PodFacts) -> PodRef {
    PodRef { namespace: pod.metadata.namespace.clone(), name: pod.metadata.name.clone(), uid: pod.metadata.uid.clone() }
}
