//! QUIC settings every Tether endpoint shares, so that both ends of a connection agree.

use quinn::MtuDiscoveryConfig;

use crate::limits::MAX_UDP_PAYLOAD;

/// Path MTU discovery up to [`MAX_UDP_PAYLOAD`] (see there): for core and the CLI.
pub fn mtu_discovery() -> MtuDiscoveryConfig {
    let mut discovery = MtuDiscoveryConfig::default();
    discovery.upper_bound(MAX_UDP_PAYLOAD);
    discovery
}
