//! zt kernel programs: thin entry points for XDP ingress, TC ingress and TC egress around
//! one shared parse/decide core.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Map keys and values are passed by reference on purpose: aya-ebpf's map methods take any
// `Borrow<K>`, and a key passed by value is one more copy on the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

#[cfg(target_arch = "bpf")]
mod clock;
#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod decide;
#[cfg(target_arch = "bpf")]
mod detect;
#[cfg(target_arch = "bpf")]
mod events;
#[cfg(target_arch = "bpf")]
mod ipcache;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod policy;
#[cfg(target_arch = "bpf")]
mod quarantine;
#[cfg(target_arch = "bpf")]
mod reference;
#[cfg(target_arch = "bpf")]
mod stats;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use zt_common::reason::{DIR_EGRESS, DIR_INGRESS};

    use crate::{
        decide::{Action, Hook, decide},
        maps::SCRATCH,
        parse::{Packet, ParseError, parse},
    };

    /// The per-CPU packet scratch, reset for a new packet.
    #[inline(always)]
    fn scratch() -> Option<&'static mut Packet> {
        let pkt = SCRATCH.get_ptr_mut(0)?;
        // SAFETY: per-CPU slot; programs do not nest on one CPU for these hooks.
        let pkt = unsafe { &mut *pkt };
        pkt.reset();
        Some(pkt)
    }

    /// Ingress at the driver (native) or generic XDP hook. Frags-aware so jumbo and GRO'd
    /// frames reach it; only the first buffer (which always holds the headers) is read.
    #[xdp(frags)]
    pub fn zt_xdp_ingress(ctx: XdpContext) -> u32 {
        let hook = Hook { direction: DIR_INGRESS, ifindex: ctx.ingress_ifindex() as u32 };
        let Some(pkt) = scratch() else {
            return xdp_action::XDP_PASS;
        };
        let parsed = parse(ctx.data(), ctx.data_end(), pkt);
        match decide(parsed, pkt, &hook) {
            Action::Pass => xdp_action::XDP_PASS,
            Action::Drop => xdp_action::XDP_DROP,
        }
    }

    /// An empty XDP program: the baseline that benchmarks divide by, loaded only by them.
    #[xdp]
    pub fn zt_xdp_baseline(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    /// The physical-limit reference of the benchmarks (see `reference`), never attached.
    #[xdp]
    pub fn zt_xdp_reference(ctx: XdpContext) -> u32 {
        let _ = crate::reference::lookup(ctx.data(), ctx.data_end());
        xdp_action::XDP_PASS
    }

    /// Samples the clock for the agent's calibration (see `clock`), never attached.
    #[xdp]
    pub fn zt_clock_sample(_ctx: XdpContext) -> u32 {
        crate::clock::sample();
        xdp_action::XDP_PASS
    }

    /// Ingress fallback at TC (when XDP is off or unavailable).
    #[classifier]
    pub fn zt_tc_ingress(ctx: TcContext) -> i32 {
        tc(&ctx, DIR_INGRESS)
    }

    /// Egress: enforces egress policy and creates conntrack entries for outbound flows.
    #[classifier]
    pub fn zt_tc_egress(ctx: TcContext) -> i32 {
        tc(&ctx, DIR_EGRESS)
    }

    /// Headers of an skb may extend past its linear area; pull them in only when the first
    /// parse runs short, since pulling can copy the packet.
    #[inline(always)]
    fn tc(ctx: &TcContext, direction: u8) -> i32 {
        // SAFETY: the context pointer is valid for the program's lifetime.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        let hook = Hook { direction, ifindex };
        let Some(pkt) = scratch() else {
            return TC_ACT_OK;
        };
        let mut parsed = parse(ctx.data(), ctx.data_end(), pkt);
        if let Err(ParseError::Truncated) = parsed {
            let len = ctx.len();
            let linear = (ctx.data_end() - ctx.data()) as u32;
            if len > linear {
                let want = if len > 512 { 512 } else { len };
                if ctx.pull_data(want).is_ok() {
                    pkt.reset();
                    parsed = parse(ctx.data(), ctx.data_end(), pkt);
                }
            }
        }
        match decide(parsed, pkt, &hook) {
            Action::Pass => TC_ACT_OK,
            Action::Drop => TC_ACT_SHOT,
        }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("zt-ebpf holds kernel programs; build it for bpfel-unknown-none (zt-agent's build does).");
}
