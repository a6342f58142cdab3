//! The rules that span flags, checked in one place before `stork serve` starts anything: a bad
//! combination fails at once, with one line naming the flags.

use std::path::PathBuf;

use super::{DriverKind, ServeArgs};
use crate::{
    driver::{
        csi::{CsiConfig, NodePluginSelector},
        openstorage::OsdConfig,
    },
    tls::client_auth,
};

/// The storage driver as the flags configure it, once every rule holds.
#[derive(Debug)]
pub enum DriverSetup {
    /// `--driver mock` with its topology file.
    Mock {
        /// `--mock-topology`.
        topology: PathBuf,
    },
    /// `--driver csi` (on a live cluster) with its validated configuration.
    Csi(CsiConfig),
    /// `--driver openstorage` (on a live cluster) with its SDK settings.
    OpenStorage(OsdConfig),
}

impl ServeArgs {
    /// Every cross-flag rule of `serve`, and the driver they resolve to; `Err` is the line to
    /// print.
    pub fn check(&self) -> Result<DriverSetup, String> {
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
            DriverKind::Mock => match &self.mock_topology {
                Some(topology) => Ok(DriverSetup::Mock { topology: topology.clone() }),
                None => Err("--driver mock needs --mock-topology FILE".into()),
            },
            DriverKind::Csi if !live => Err(
                "--driver csi reads CSINodes and node-plugin pods from a live cluster; it cannot run with --objects"
                    .into(),
            ),
            DriverKind::Csi => self.csi_config().map(DriverSetup::Csi),
            DriverKind::Openstorage if !live => Err(
                "--driver openstorage reads the OpenStorage SDK and PVs of a live cluster; it cannot run with --objects"
                    .into(),
            ),
            DriverKind::Openstorage => self.osd.config(&self.rack_label).map(DriverSetup::OpenStorage),
        }
    }

    /// The CSI driver's configuration as the flags give it, validated.
    fn csi_config(&self) -> Result<CsiConfig, String> {
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
