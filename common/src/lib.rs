//! The small crate gala-gopher and gala-spider share, so that the spider
//! builds without the agent (libbpf, the eBPF objects, the C probes,
//! librdkafka's producer side):
//! - [`topology_records`]: the tables the topology is built from, their
//!   names, and the metric JSON object as the agent writes it to Kafka and
//!   to its metric log files (docs/compat.md §6, §8);
//! - [`systemd`]: readiness, status and watchdog notifications and the
//!   journal log target, as both daemons' units expect them.

pub mod systemd;
pub mod topology_records;
