//! What is in force, as metrics: `config_info{sha256}` (always 1; the
//! label is the SHA-256 of the policy text), the time of the last
//! successful load or reload, and the served certificate's `notAfter`
//! (`docs/audit-and-metrics.md`, "Metrics"; the `GatewayCertificateExpiresSoon`
//! alert in `deploy/prometheus/alerts.yml` reads the last one).

use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Sha256Label {
    sha256: String,
}

/// `config_info`: one series, labelled with the policy's hash.
#[derive(Debug, Clone, Default)]
struct ConfigInfo(Arc<RwLock<String>>);

impl EncodeMetric for ConfigInfo {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let sha256 = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if sha256.is_empty() {
            return Ok(());
        }
        ConstGauge::new(1).encode(encoder.encode_family(&Sha256Label { sha256 })?)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// The policy and certificate in force.
#[derive(Debug, Default)]
pub(super) struct InForce {
    config_info: ConfigInfo,
    last_reload: Gauge,
    certificate_not_after: Gauge,
}

impl InForce {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "config_info",
            "1, labelled with the SHA-256 of the policy file in force",
            self.config_info.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the policy in force was loaded (start or successful reload), Unix seconds",
            self.last_reload.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "When the served certificate expires (its notAfter), Unix seconds",
            self.certificate_not_after.clone(),
        );
    }

    /// A policy with hash `sha256` and a certificate valid until
    /// `not_after` (if readable) are in force from now.
    pub(super) fn loaded(&self, sha256: &str, not_after: Option<OffsetDateTime>) {
        *self
            .config_info
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = sha256.to_string();
        self.last_reload
            .set(OffsetDateTime::now_utc().unix_timestamp());
        self.certificate_not_after
            .set(not_after.map_or(0, OffsetDateTime::unix_timestamp));
    }
}
