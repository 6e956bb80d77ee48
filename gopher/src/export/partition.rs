//! Kafka message keys for the topology tables (tcp_link and the LB
//! tables): chosen so that both sides of one connection land on the same
//! partition, and so several gala-spiders in one consumer group each see
//! whole connections.

use crate::ingress::Accepted;

/// Writes the `nth` partition key of `rec` into `out` and returns true, or
/// returns false when `rec` has no `nth` key. A record of a topology table
/// is sent once per key (`nth` = 0, 1, ... until false); a record with no
/// key at all (`nth` = 0 gives false) is sent once with its per-series key.
pub fn topology_key(out: &mut String, rec: &Accepted, nth: usize) -> bool {
    let _ = (out, rec, nth);
    false
}
