//! Exporters: Prometheus (pull) and log files (push); Kafka comes later.
//! Exporters know nothing about probes: they read the store or subscribe to
//! the ingress's stream of accepted records.

pub mod json;
pub mod logfile;
pub mod prometheus;
