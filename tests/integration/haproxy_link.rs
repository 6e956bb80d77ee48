//! Tests of issue 15 (placeholder: filled by the work on `haproxy_link`).
