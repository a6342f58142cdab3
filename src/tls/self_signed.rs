//! `--self-signed`: stork issues its own CA and serving certificate, keeps them in a Secret that
//! every replica shares, and keeps the `caBundle` of its webhook configurations current.
//!
//! Every replica runs the same loop; there is no leader. The apiserver settles races: of
//! replicas creating the Secret at once, all but one get 409 AlreadyExists and read the winner's;
//! renewals replace the Secret at the resourceVersion they read, so a loser gets 409 Conflict
//! and reads the winner's too. What to renew is decided in [`super::renewal`]. The caBundle is
//! patched before the new certificate is served, and a new CA is trusted well before anything
//! is served under it, so admission requests never meet a certificate they cannot verify.

use std::{
    pin::pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Secret,
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    ReloadingCertResolver, ca_bundle,
    client_auth::ClientAuth,
    describe,
    renewal::{self, Material, Plan, Policy, Reason},
};

/// Where the self-signed mode keeps its state, and how it renews.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of stork's Secret and Service.
    pub namespace: String,
    /// The Service fronting stork; the certificate is issued for `<service>.<namespace>.svc`.
    pub service: String,
    /// The Secret holding the CA and serving certificate.
    pub secret: String,
    /// Name of both the MutatingWebhookConfiguration and the ValidatingWebhookConfiguration.
    pub webhook_config: String,
    /// Renew this long before expiry (a CA twice as long before).
    pub renew_before: Duration,
    /// How often to re-read the Secret even when its watch is quiet.
    pub check_interval: Duration,
}

impl Settings {
    /// Check the settings before anything touches the cluster; the renewal policy they make.
    pub fn policy(&self) -> Result<Policy, super::Error> {
        if self.check_interval.is_zero() {
            return Err(super::Error::CheckInterval);
        }
        Policy::new(&self.service, &self.namespace, self.renew_before)
    }
}

/// Errors of the self-signed mode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings are invalid, or a certificate could not be issued.
    #[error(transparent)]
    Tls(#[from] super::Error),
    /// The Secret could not be read or written.
    #[error("failed to {action} Secret {namespace}/{name}")]
    Secret {
        /// `read` or `write`.
        action: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Secret's serving pair cannot be served.
    #[error("failed to serve the certificate in Secret {namespace}/{name}")]
    Serve {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why the pair was rejected.
        #[source]
        source: super::Error,
    },
    /// A webhook configuration's caBundle could not be read or patched.
    #[error("failed to set the caBundle of {kind} {name}")]
    CaBundle {
        /// `MutatingWebhookConfiguration` or `ValidatingWebhookConfiguration`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The background half of the self-signed mode: renews, converges and publishes the caBundle.
pub struct Rotation {
    settings: Settings,
    policy: Policy,
    secrets: Api<Secret>,
    mutating: Api<MutatingWebhookConfiguration>,
    validating: Api<ValidatingWebhookConfiguration>,
    resolver: Arc<ReloadingCertResolver>,
    /// Whether each configuration was missing at the last check, so that is logged once, not every minute.
    missing: [bool; 2],
    /// Trusts the Secret's CA bundle for extender clients (`--extender-client-ca self-signed`).
    client_auth: Option<ClientAuth>,
}

/// Create or read (and if due, renew) the Secret, and return a resolver serving its certificate
/// plus the [`Rotation`] to run in the background. Fails if the apiserver cannot be reached.
pub async fn start(
    client: Client,
    settings: Settings,
    client_auth: Option<ClientAuth>,
) -> Result<(Arc<ReloadingCertResolver>, Rotation), Error> {
    let policy = settings.policy()?;
    let secrets = Api::namespaced(client.clone(), &settings.namespace);
    let material = ensure(&secrets, &settings, &policy).await?;
    let resolver = ReloadingCertResolver::from_pem(&material.cert, &material.key).map_err(|source| Error::Serve {
        namespace: settings.namespace.clone(),
        name: settings.secret.clone(),
        source,
    })?;
    let mut rotation = Rotation {
        settings,
        policy,
        secrets,
        mutating: Api::all(client.clone()),
        validating: Api::all(client),
        resolver: resolver.clone(),
        missing: [false; 2],
        client_auth,
    };
    rotation.publish_bundle(&material.ca_bundle).await;
    if let Some(auth) = &rotation.client_auth {
        auth.set_ca_pem(material.ca_bundle.as_bytes());
    }
    info!(dns = rotation.policy.service_dns(), serial = ?rotation.resolver.current_serial(), "serving a self-signed certificate");
    Ok((resolver, rotation))
}

impl Rotation {
    /// Check every `check_interval` and on every change of the Secret, until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let fields = format!("metadata.name={}", self.settings.secret);
        let mut events =
            pin!(watcher(self.secrets.clone(), watcher::Config::default().fields(&fields)).default_backoff());
        let mut watching = true;
        let mut ticker = tokio::time::interval(self.settings.check_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await; // The first tick is immediate; `start` has just checked.
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => self.check().await,
                event = events.next(), if watching => match event {
                    // Only ticks renew: renewing on events would answer our own writes forever
                    // when renew-before exceeds the validity.
                    Some(Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret))) => {
                        self.adopt_if_servable(&Material::from_secret(&secret)).await;
                    }
                    Some(Ok(watcher::Event::Delete(_))) => self.check().await,
                    Some(Ok(_)) => {}
                    Some(Err(err)) => warn!(error = &err as &dyn std::error::Error, "Secret watch failed; retrying"),
                    None => {
                        warn!("Secret watch ended; relying on periodic checks");
                        watching = false;
                    }
                },
            }
        }
    }

    /// Read, renew if due, publish and serve.
    async fn check(&mut self) {
        match ensure(&self.secrets, &self.settings, &self.policy).await {
            Ok(material) => self.adopt(&material).await,
            Err(err) => warn!(error = &err as &dyn std::error::Error, "certificate check failed; serving as before"),
        }
    }

    /// Adopt what another replica wrote, unless it cannot be served at all (the next check repairs that).
    async fn adopt_if_servable(&mut self, material: &Material) {
        match renewal::assess(material, &self.policy, SystemTime::now()).serving {
            Some(reason @ Reason::ServingUnusable(_)) => debug!(%reason, "not adopting the Secret's contents"),
            _ => self.adopt(material).await,
        }
    }

    /// Publish the bundle first, then serve: a caller must trust a certificate before it sees it.
    async fn adopt(&mut self, material: &Material) {
        self.publish_bundle(&material.ca_bundle).await;
        // The whole bundle: a scheduler still holding a client certificate of the previous CA
        // stays trusted until its successor reaches it.
        if let Some(auth) = &self.client_auth {
            auth.set_ca_pem(material.ca_bundle.as_bytes());
        }
        match self.resolver.set_pem(&material.cert, &material.key) {
            Ok(true) => match describe(&self.resolver.current.load()) {
                Some((serial, not_after)) => info!(%serial, %not_after, "serving a renewed certificate"),
                None => info!("serving a renewed certificate"),
            },
            Ok(false) => {}
            Err(err) => warn!(error = &err as &dyn std::error::Error, "keeping the served certificate"),
        }
    }

    /// Set `caBundle` on every webhook of both configurations; log and retry later on failure.
    async fn publish_bundle(&mut self, bundle: &str) {
        let name = self.settings.webhook_config.clone();
        let results = [
            (
                "MutatingWebhookConfiguration",
                ca_bundle::set(&self.mutating, &name, bundle, ca_bundle::mutating_entries).await,
            ),
            (
                "ValidatingWebhookConfiguration",
                ca_bundle::set(&self.validating, &name, bundle, ca_bundle::validating_entries).await,
            ),
        ];
        for ((kind, result), missing) in results.into_iter().zip(&mut self.missing) {
            match result {
                Ok(Some(0)) => *missing = false,
                Ok(Some(patched)) => {
                    info!(kind, %name, webhooks = patched, "updated caBundle");
                    *missing = false;
                }
                Ok(None) if !*missing => {
                    info!(kind, %name, "webhook configuration not found; its caBundle is set once it exists");
                    *missing = true;
                }
                Ok(None) => {}
                Err(source) => {
                    let err = Error::CaBundle { kind, name: name.clone(), source };
                    warn!(error = &err as &dyn std::error::Error, "caBundle not updated; retrying at the next check");
                }
            }
        }
    }
}

/// The Secret's contents after creating it or renewing them if due.
///
/// A 409 means another replica wrote first: its contents are used as they are.
async fn ensure(secrets: &Api<Secret>, settings: &Settings, policy: &Policy) -> Result<Material, Error> {
    let name = &settings.secret;
    let secret_err = |action| {
        move |source| Error::Secret { action, namespace: settings.namespace.clone(), name: name.clone(), source }
    };
    let existing = secrets.get_opt(name).await.map_err(secret_err("read"))?;
    let current = existing.as_ref().map(Material::from_secret).unwrap_or_default();
    let Plan::Write { material, reasons } = renewal::plan(&current, policy, SystemTime::now())? else {
        return Ok(current);
    };
    let reasons = reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let written = match existing {
        None => secrets.create(&PostParams::default(), &material.to_secret(&settings.namespace, name)).await,
        // Replacing carries the resourceVersion read above: optimistic concurrency.
        Some(mut secret) => {
            secret.data = Some(material.to_data());
            secret.string_data = None;
            secrets.replace(name, &PostParams::default(), &secret).await
        }
    };
    match written {
        Ok(_) => {
            info!(secret = %name, %reasons, "wrote renewed certificates");
            Ok(material)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            debug!(secret = %name, "another replica wrote the Secret first; using its certificates");
            let secret = secrets.get(name).await.map_err(secret_err("read"))?;
            Ok(Material::from_secret(&secret))
        }
        Err(source) => Err(secret_err("write")(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            namespace: "kube-system".into(),
            service: "stork-service".into(),
            secret: "stork-webhook-tls".into(),
            webhook_config: "stork-webhooks".into(),
            renew_before: Duration::from_secs(30 * 24 * 3600),
            check_interval: Duration::from_secs(60),
        }
    }

    #[test]
    fn settings_are_checked_before_anything_touches_the_cluster() {
        assert_eq!(settings().policy().unwrap().service_dns(), "stork-service.kube-system.svc");

        let never = Settings { check_interval: Duration::ZERO, ..settings() };
        assert!(matches!(never.policy(), Err(crate::tls::Error::CheckInterval)));
        let too_early = Settings { renew_before: renewal::CA_VALIDITY, ..settings() };
        assert!(matches!(too_early.policy(), Err(crate::tls::Error::RenewBefore(_))));
    }
}
