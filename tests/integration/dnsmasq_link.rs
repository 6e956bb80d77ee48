//! Tests of issue 15 (placeholder: filled by the work on `dnsmasq_link`).
