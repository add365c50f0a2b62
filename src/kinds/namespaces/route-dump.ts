// The routes of a network namespace as criu keeps them (route-N.img,
// route6-N.img): the raw output of `ip route save`, iproute2's 4-byte magic
// and then the RTM_NEWROUTE messages the kernel answered a route dump with,
// each an nlmsghdr, an rtmsg and its attributes.
//
// Those messages carry state the kernel computes: RTNH_F_LINKDOWN (the
// route's device has no carrier) and RTNH_F_DEAD (its device is down), in
// rtm_flags and in each nexthop of a multipath route (RTA_MULTIPATH). The
// kernel refuses a new IPv4 route that names either ("Invalid rtm_flags -
// can not contain DEAD or LINKDOWN", fib_create_info; "Invalid flags for
// nexthop", fib_get_nhs) and sets them again itself for a route through a
// link without carrier, so a route dumped while its link had none cannot go
// back as saved. criu hands the image to `ip route restore` as it is (and
// fails there); crest clears the two flags in a copy it hands to the tool.
// The image stays what the dump read. Pure: no system calls.

/** iproute2's route_dump_magic, the first 4 bytes (little-endian on the machines crest runs on) of `ip route save`. */
export const ROUTE_DUMP_MAGIC = 0x45311224;
export const RTM_NEWROUTE = 24;
export const RTNH_F_DEAD = 0x1, RTNH_F_LINKDOWN = 0x10;
/** The flags of a route or nexthop that are the kernel's state, never a request (RTNH_F_DEAD | RTNH_F_LINKDOWN). */
export const RTNH_KERNEL_STATE = RTNH_F_DEAD | RTNH_F_LINKDOWN;
export const RTA_MULTIPATH = 9;

const NLMSG_HDRLEN = 16, RTMSG_LEN = 12, RTNH_LEN = 8;
const align4 = (n: number): number => (n + 3) & ~3;

export interface ClearedRoutes {
  /** The stream with the kernel's state cleared: a copy, the input untouched. */
  data: Buffer;
  /** RTM_NEWROUTE messages in the stream. */
  routes: number;
  /** Routes whose rtm_flags or a nexthop's flags had RTNH_F_DEAD or RTNH_F_LINKDOWN. */
  cleared: number;
}

/**
 * Clears RTNH_F_DEAD and RTNH_F_LINKDOWN from every route of an `ip route
 * save` stream (rtm_flags, and rtnh_flags of each RTA_MULTIPATH nexthop).
 * A stream that does not hold together throws, saying where.
 */
export function clearKernelRouteState(stream: Buffer): ClearedRoutes {
  if (stream.length < 4 || stream.readUInt32LE(0) !== ROUTE_DUMP_MAGIC) {
    const got = stream.length < 4 ? `${stream.length} bytes` : `magic 0x${stream.readUInt32LE(0).toString(16)}`;
    throw new Error(`not an \`ip route save\` stream (${got}, expected magic 0x${ROUTE_DUMP_MAGIC.toString(16)})`);
  }
  const data = Buffer.from(stream);
  let routes = 0, cleared = 0;
  for (let off = 4; off < data.length;) {
    if (off + NLMSG_HDRLEN > data.length) throw new Error(`${data.length - off} bytes at offset ${off} are no netlink message`);
    const len = data.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > data.length) throw new Error(`the netlink message at offset ${off} says ${len} bytes, ${data.length - off} are left`);
    if (data.readUInt16LE(off + 4) === RTM_NEWROUTE) {
      if (len < NLMSG_HDRLEN + RTMSG_LEN) throw new Error(`the route at offset ${off} is ${len} bytes, too short for its rtmsg`);
      routes++;
      if (clearRoute(data, off, len)) cleared++;
    }
    off += align4(len);
  }
  return { data, routes, cleared };
}

/** Clears the kernel's state from the route at `off` (`len` bytes); true if it had any. */
function clearRoute(data: Buffer, off: number, len: number): boolean {
  let had = false;
  const flagsAt = off + NLMSG_HDRLEN + 8; // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (a byte each), flags
  const flags = data.readUInt32LE(flagsAt);
  if (flags & RTNH_KERNEL_STATE) {
    data.writeUInt32LE((flags & ~RTNH_KERNEL_STATE) >>> 0, flagsAt);
    had = true;
  }
  const end = off + len;
  for (let at = off + NLMSG_HDRLEN + RTMSG_LEN; at + 4 <= end;) {
    const alen = data.readUInt16LE(at);
    if (alen < 4 || at + alen > end) throw new Error(`the route at offset ${off} has an attribute of ${alen} bytes at offset ${at}, past its end`);
    if ((data.readUInt16LE(at + 2) & 0x3fff) === RTA_MULTIPATH) {
      // struct rtnexthop: len (u16), flags (u8), hops (u8), ifindex (s32), then its own attributes.
      const mpEnd = at + alen;
      for (let nh = at + 4; nh + RTNH_LEN <= mpEnd;) {
        const nhLen = data.readUInt16LE(nh);
        if (nhLen < RTNH_LEN || nh + nhLen > mpEnd) throw new Error(`the route at offset ${off} has a nexthop of ${nhLen} bytes at offset ${nh}, past its RTA_MULTIPATH`);
        const nhFlags = data.readUInt8(nh + 2);
        if (nhFlags & RTNH_KERNEL_STATE) {
          data.writeUInt8(nhFlags & ~RTNH_KERNEL_STATE, nh + 2);
          had = true;
        }
        nh += align4(nhLen);
      }
    }
    at += align4(alen);
  }
  return had;
}
