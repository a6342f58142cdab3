//! Kubernetes Events about pods and other objects, sent off the request path: decisions queue them, a background
//! task publishes them. With no API server (offline mode) they are only logged.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Severity of a pod event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Informational.
    Normal,
    /// Something the user should look at.
    Warning,
}

/// An event a decision wants recorded on its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// Severity.
    pub severity: Severity,
    /// Reason, e.g. `FailedScheduling`.
    pub reason: &'static str,
    /// Human-readable note.
    pub message: String,
}

impl PodEvent {
    /// A warning event.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, reason, message: message.into() }
    }

    /// A normal (informational) event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Normal, reason, message: message.into() }
    }
}

/// The pod an event is about.
#[derive(Debug, Clone, Default)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// An event waiting to be published: about what, during which action.
type Queued = (ObjectReference, &'static str, PodEvent);

/// Queue of events to publish; cloning shares the queue. Full queue drops (and logs) the event:
/// events are best-effort and must never slow a decision down.
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<Queued>>,
}

impl EventSink {
    /// A sink that only logs (offline mode, tests).
    pub fn log_only() -> Self {
        Self { tx: None }
    }

    /// A sink publishing through the API server, plus the task that drains it.
    pub fn publishing(client: Client, controller: &str, cancel: CancellationToken) -> (Self, impl Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(1024);
        let reporter = Reporter { controller: controller.to_string(), instance: std::env::var("POD_NAME").ok() };
        let recorder = Recorder::new(client, reporter);
        (Self { tx: Some(tx) }, drain(recorder, rx, cancel))
    }

    /// Records a scheduling event on a pod (never blocks).
    pub fn send(&self, pod: PodRef, event: PodEvent) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace),
            name: Some(pod.name),
            uid: (!pod.uid.is_empty()).then_some(pod.uid),
            ..ObjectReference::default()
        };
        self.send_about(reference, "Scheduling", event);
    }

    /// Records an event on any object, e.g. `kube::Resource::object_ref` of a PVC (never blocks).
    /// `action` says what stork was doing (`Scheduling`, `Provisioning`, `Snapshotting`, …).
    pub fn send_about(&self, reference: ObjectReference, action: &'static str, event: PodEvent) {
        let object =
            format!("{}/{}", reference.namespace.as_deref().unwrap_or(""), reference.name.as_deref().unwrap_or(""));
        tracing::info!(
            kind = reference.kind.as_deref().unwrap_or(""),
            // Names come from requests: bounded and escaped.
            object = %crate::text::Untrusted(&object),
            reason = event.reason,
            message = %crate::text::Untrusted(&event.message),
            "event"
        );
        // A flood of failing pods fills the queue; one line per dropped event would flood the log.
        static QUEUE_FULL: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new();
        if let Some(tx) = &self.tx
            && let Err(e) = tx.try_send((reference, action, event))
            && let Some(suppressed) = QUEUE_FULL.admit()
        {
            tracing::warn!(error = %e, suppressed, "event queue full; dropping event");
        }
    }
}

async fn drain(recorder: Recorder, mut rx: mpsc::Receiver<Queued>, cancel: CancellationToken) {
    loop {
        let (reference, action, ev) = tokio::select! {
            _ = cancel.cancelled() => return,
            next = rx.recv() => match next { Some(x) => x, None => return },
        };
        let event = Event {
            type_: match ev.severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: ev.reason.to_string(),
            note: Some(ev.message),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "failed to publish event");
        }
    }
}
