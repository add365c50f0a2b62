// A network namespace's sysctls as criu keeps them: the per-device ipv4 and
// ipv6 settings (net/ipv4/conf/DEV/*, net/ipv6/conf/DEV/*) in criu's fixed
// lists, one sysctl_entry per name, position for position (criu reads them
// by index); the namespace's "all" and "default" sets, net/unix and
// net/ipv4/ping_group_range. Read and written through /proc/sys, which shows
// the network namespace of the calling thread (run inside inNamespaceOf).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { sysctl_entry } from "../../images/index.js";
import { SysctlType } from "../../images/index.js";

/** criu's devconfs4, in its order. */
export const DEVCONFS4 = [
  "accept_local", "accept_redirects", "accept_source_route", "arp_accept", "arp_announce", "arp_filter", "arp_ignore",
  "arp_notify", "bootp_relay", "disable_policy", "disable_xfrm", "force_igmp_version", "forwarding",
  "igmpv2_unsolicited_report_interval", "igmpv3_unsolicited_report_interval", "log_martians", "medium_id",
  "promote_secondaries", "proxy_arp", "proxy_arp_pvlan", "route_localnet", "rp_filter", "secure_redirects",
  "send_redirects", "shared_media", "src_valid_mark", "tag", "ignore_routes_with_linkdown", "drop_gratuitous_arp",
  "drop_unicast_in_l2_multicast",
] as const;

/** criu's devconfs6, in its order; stable_secret is the one string. */
export const DEVCONFS6 = [
  "accept_dad", "accept_ra", "accept_ra_defrtr", "accept_ra_from_local", "accept_ra_min_hop_limit", "accept_ra_mtu",
  "accept_ra_pinfo", "accept_ra_rt_info_max_plen", "accept_ra_rtr_pref", "accept_redirects", "accept_source_route",
  "autoconf", "dad_transmits", "disable_ipv6", "drop_unicast_in_l2_multicast", "drop_unsolicited_na", "force_mld_version",
  "force_tllao", "forwarding", "hop_limit", "ignore_routes_with_linkdown", "keep_addr_on_down", "max_addresses",
  "max_desync_factor", "mldv1_unsolicited_report_interval", "mldv2_unsolicited_report_interval", "mtu", "ndisc_notify",
  "optimistic_dad", "proxy_ndp", "regen_max_retry", "router_probe_interval", "router_solicitation_delay",
  "router_solicitation_interval", "router_solicitations", "stable_secret", "suppress_frag_ndisc", "temp_prefered_lft",
  "temp_valid_lft", "use_oif_addrs_only", "use_optimistic", "use_tempaddr",
] as const;

export const UNIX_CONF = ["max_dgram_qlen"] as const;
export const IPV4_SYSCTLS = ["ping_group_range"] as const;

const STRINGS = new Set(["stable_secret", "ping_group_range"]);

function readValue(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").replace(/\n$/, "");
  } catch {
    // Missing on this kernel, or unset (stable_secret reads EIO): criu leaves the value out.
    return undefined;
  }
}

/** The entries of one directory of sysctls, in the list's order. */
export function readSysctls(dir: string, names: readonly string[]): sysctl_entry[] {
  return names.map((name) => {
    const v = readValue(`${dir}/${name}`);
    if (STRINGS.has(name)) return { type: SysctlType.CTL_STR, ...(v !== undefined ? { sarg: v } : {}) };
    return { type: SysctlType.CTL_32, ...(v !== undefined && /^-?\d+$/.test(v) ? { iarg: Number(v) } : {}) };
  });
}

/** The text a sysctl entry writes, or undefined when the image has no value for it. */
const valueOf = (e: sysctl_entry | undefined): string | undefined => (e?.type === SysctlType.CTL_STR ? e.sarg : e?.iarg?.toString());

/**
 * Writes the values of the image that differ from the namespace's current
 * ones (a new namespace starts with the defaults); accept_redirects last, as
 * criu does (forwarding resets it). `what` names the set for errors.
 */
export function writeSysctls(dir: string, names: readonly string[], entries: readonly sysctl_entry[], what: string): void {
  const order = names.map((n, i) => ({ n, i })).sort((a, b) => Number(a.n === "accept_redirects") - Number(b.n === "accept_redirects"));
  for (const { n, i } of order) {
    const want = valueOf(entries[i]);
    if (want === undefined) continue;
    const path = `${dir}/${n}`;
    const now = readValue(path);
    // Unreadable but there (an unset stable_secret reads EIO): written; missing on this kernel: left.
    if (now === undefined ? !existsSync(path) : now.replace(/\s+/g, " ") === want.replace(/\s+/g, " ")) continue;
    try {
      writeFileSync(path, want);
    } catch (e) {
      throw new Error(`cannot set ${what} sysctl ${n} to ${JSON.stringify(want)} (it is ${JSON.stringify(now)}): ${(e as Error).message}`);
    }
  }
}
