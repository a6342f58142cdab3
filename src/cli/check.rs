//! The rules that span flags, checked in one place before `stork serve` starts anything: a bad
//! combination fails at once, with one line naming the flags.

use super::{DriverKind, ServeArgs};
use crate::{
    driver::csi::{CsiConfig, NodePluginSelector},
    tls::client_auth,
};

impl ServeArgs {
    /// Every cross-flag rule of `serve`; `Err` is the line to print.
    pub fn check(&self) -> Result<(), String> {
        self.monitor.validate()?;
        self.limits.validate()?;
        let live = self.objects.is_none();
        if self.self_signed.enabled && !live {
            return Err(
                "--self-signed needs a live cluster to keep its Secret in; it cannot be combined with --objects".into(),
            );
        }
        let self_signed_ca =
            self.extender_client_ca.as_ref().is_some_and(|p| p.as_os_str() == client_auth::SELF_SIGNED);
        if self_signed_ca && !self.self_signed.enabled {
            return Err(
                "--extender-client-ca=self-signed trusts the CA of --self-signed mode; add --self-signed or name a CA file"
                    .into(),
            );
        }
        match self.driver {
            DriverKind::Mock if self.mock_topology.is_none() => Err("--driver mock needs --mock-topology FILE".into()),
            DriverKind::Mock => Ok(()),
            DriverKind::Csi if !live => Err(
                "--driver csi reads CSINodes and node-plugin pods from a live cluster; it cannot run with --objects"
                    .into(),
            ),
            DriverKind::Csi => self.csi_config().map(drop),
        }
    }

    /// The CSI driver's configuration as the flags give it, validated.
    pub fn csi_config(&self) -> Result<CsiConfig, String> {
        let node_plugins = self
            .csi_node_plugins
            .iter()
            .map(|s| s.parse::<NodePluginSelector>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let config = CsiConfig { drivers: self.csi_drivers.clone(), node_plugins, rack_label: self.rack_label.clone() };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}
