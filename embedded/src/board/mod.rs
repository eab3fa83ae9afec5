//! Boards, one module each; a cargo feature selects the one a build runs on.
//!
//! A board module provides the same small set of items, which [`crate::run`] and the
//! console use; apps only see [`crate::Board`]:
//!
//! - `NAME`, the board's name;
//! - `Rng`, its entropy source (`rand_core` 0.6 `RngCore + CryptoRng`);
//! - `init()`, the hardware set-up before the executor starts (clocks, time driver,
//!   console), returning the parts `start` needs;
//! - `async start(spawner, parts)`, which brings up the network (Ethernet, or Wi-Fi after
//!   loading the radio's firmware) and the network stack (spawning the stack's task) and
//!   returns the [`crate::Board`];
//! - `console_write(bytes)` and `exit(status)`;
//! - `ProvisionFlash`, its flash as `embedded_storage`'s `NorFlash` (`BASE`, the address of
//!   offset 0, and `take()`), through which the node's blob is updated and recovered;
//! - `before_hand_over(rng)`, what the board does before one image jumps to the other
//!   (`crate::handover`).

#[cfg(any(test, all(target_os = "none", feature = "mps2-an385")))]
pub mod mps2_an385;
#[cfg(all(target_os = "none", feature = "nucleo-f767zi"))]
pub mod nucleo_f767zi;
#[cfg(all(target_os = "none", feature = "pico2-w"))]
pub mod pico2_w;

#[cfg(all(target_os = "none", feature = "mps2-an385"))]
pub(crate) use mps2_an385 as selected;
#[cfg(all(target_os = "none", feature = "nucleo-f767zi"))]
pub(crate) use nucleo_f767zi as selected;
#[cfg(all(target_os = "none", feature = "pico2-w"))]
pub(crate) use pico2_w as selected;

#[cfg(target_os = "none")]
pub(crate) mod area {
    //! The provisioning and seed areas named by the board's memory map, the scratch area
    //! the node's blob is updated through and its recovery at boot, and what a board itself
    //! reads from a node's blob: its address and its Wi-Fi network.

    use dissent_core::provision::{Blob, Node, TRUSTEE_APP};
    use dissent_core::wire::NodeRole;

    extern "C" {
        static _provision_start: u8;
        static _provision_end: u8;
    }

    /// The provisioning area.
    pub fn provisioning() -> &'static [u8] {
        // SAFETY: the linker script places these symbols around a memory region that the
        // firmware never writes and that stays mapped for the whole run.
        unsafe {
            let start = core::ptr::addr_of!(_provision_start);
            let end = core::ptr::addr_of!(_provision_end);
            core::slice::from_raw_parts(start, end as usize - start as usize)
        }
    }

    /// The node's blob's area and the scratch area its updates go through
    /// (`crate::blob_update`), as offsets in the board's flash (`ProvisionFlash`).
    pub fn update_areas() -> crate::blob_update::Areas {
        extern "C" {
            static _scratch_start: u8;
            static _scratch_end: u8;
        }
        // Only the symbols' addresses are taken.
        let at = |s: *const u8| s as usize as u32 - super::selected::ProvisionFlash::BASE;
        let (blob, blob_end) = (
            at(core::ptr::addr_of!(_provision_start)),
            at(core::ptr::addr_of!(_provision_end)),
        );
        let (scratch, scratch_end) = (
            at(core::ptr::addr_of!(_scratch_start)),
            at(core::ptr::addr_of!(_scratch_end)),
        );
        crate::blob_update::Areas {
            blob,
            blob_len: blob_end - blob,
            scratch,
            scratch_len: scratch_end - scratch,
        }
    }

    /// At boot, before anything reads the node's blob: an update of it that a reset cut is
    /// finished or undone (`crate::blob_update::recover`), so the blob is whole, old or
    /// new. A flash that fails stops the board (a real board resets and tries again).
    pub fn recover() {
        use crate::blob_update::{recover, Recovered};
        let name = super::selected::NAME;
        match recover(&mut super::selected::ProvisionFlash::take(), update_areas()) {
            Ok(Recovered::Completed) => {
                crate::println!(
                    "{}: an update of the node's blob, cut by a reset, finished",
                    name
                )
            }
            Ok(_) => {}
            Err(_) => {
                crate::println!(
                    "{}: the node's blob cannot be recovered: flash failed",
                    name
                );
                crate::exit(crate::EXIT_BOARD_FAILED)
            }
        }
    }

    /// The client or trustee blob in the provisioning area, whichever role it is for.
    #[cfg(not(feature = "setup-image"))]
    #[cfg_attr(feature = "mps2-an385", allow(dead_code))]
    pub fn node() -> Result<Node<'static>, &'static str> {
        use dissent_core::provision::CLIENT_APP;
        let area = provisioning();
        let role = match Blob::parse(area).map(|b| b.app) {
            Ok(TRUSTEE_APP) => NodeRole::Trustee,
            Ok(CLIENT_APP) => NodeRole::Client,
            _ => return Err("no client or trustee blob in the provisioning area"),
        };
        // The app reads the blob again and says what is wrong with it.
        Node::parse(area, role).map_err(|_| "the provisioning blob is not readable")
    }

    /// The setup image's DC-net node blob (a trustee's) in the provisioning area, decoded
    /// as the setup image decodes it: without `Node::parse`'s checks of every field, which
    /// the DC-net image makes when it boots (their code would take 1.2 KiB of the setup
    /// image's flash). What a board reads of it, its address and its Wi-Fi network, is
    /// checked as `Node::parse` checks it.
    #[cfg(feature = "setup-image")]
    #[cfg_attr(feature = "mps2-an385", allow(dead_code))]
    pub fn node() -> Result<Node<'static>, &'static str> {
        use dissent_core::provision::FORMAT;
        let decoded =
            Blob::parse(provisioning()).and_then(|b| b.decode::<(u16, Node<'static>)>(TRUSTEE_APP));
        match decoded {
            Ok((FORMAT, node))
                if node.role == NodeRole::Trustee
                    && node.ipv4.is_none_or(|ip| ip.is_valid())
                    && node.wifi.is_none_or(|wifi| wifi.is_valid()) =>
            {
                Ok(node)
            }
            _ => Err("the provisioning blob is not readable"),
        }
    }

    /// The network configuration of a real board: the address its blob gives, else DHCP
    /// (when built with it).
    #[cfg(not(feature = "mps2-an385"))]
    pub fn network_config() -> Result<embassy_net::Config, &'static str> {
        use embassy_net::{Ipv4Address, Ipv4Cidr, StaticConfigV4};
        match node().ok().and_then(|n| n.ipv4) {
            Some(ip) => {
                let gateway = Ipv4Address::from(ip.gateway);
                let dns = Ipv4Address::from(ip.dns_server);
                Ok(embassy_net::Config::ipv4_static(StaticConfigV4 {
                    address: Ipv4Cidr::new(Ipv4Address::from(ip.address), ip.prefix_len),
                    gateway: (!gateway.is_unspecified()).then_some(gateway),
                    dns_servers: [dns].into_iter().filter(|d| !d.is_unspecified()).collect(),
                }))
            }
            #[cfg(feature = "dhcp")]
            None => Ok(embassy_net::Config::dhcpv4(Default::default())),
            #[cfg(not(feature = "dhcp"))]
            None => Err(
                "this firmware takes no address by DHCP (built without `dhcp`) and \
                 the provisioning gives none",
            ),
        }
    }
}
