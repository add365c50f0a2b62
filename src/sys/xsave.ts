// The XSAVE area layout of this CPU, from CPUID leaf 0xD. ptrace's
// NT_X86_XSTATE uses the standard (uncompacted) format: the 512-byte legacy
// FXSAVE region, the 64-byte XSAVE header (xstate_bv first), then each
// enabled component at the offset CPUID gives.
import { native } from "./native.js";

export const FXSAVE_SIZE = 512;
export const XSTATE_BV_OFFSET = 512;
/** xfeature numbers of the user state components CRIU's image records. */
export const XFEATURE = { X87: 0, SSE: 1, YMM: 2, BNDREGS: 3, BNDCSR: 4, OPMASK: 5, ZMM_HI256: 6, HI16_ZMM: 7, PKRU: 9 } as const;

export interface XsaveComponent {
  offset: number;
  size: number;
}

let cached: { size: number; features: bigint; comps: Map<number, XsaveComponent> } | null = null;

function layout() {
  if (cached) return cached;
  const [eax0, , ecx0, edx0] = native.cpuid(0xd, 0);
  const features = (BigInt(edx0 >>> 0) << 32n) | BigInt(eax0 >>> 0);
  const comps = new Map<number, XsaveComponent>();
  for (let i = 2; i < 64; i++) {
    if (!(features & (1n << BigInt(i)))) continue;
    const [size, offset] = native.cpuid(0xd, i);
    comps.set(i, { offset: offset >>> 0, size: size >>> 0 });
  }
  cached = { size: ecx0 >>> 0, features, comps };
  return cached;
}

/** Bytes needed for the XSAVE area of every supported user component. */
export const xstateSize = (): number => layout().size;
/** The supported user xfeatures (XCR0 as CPUID reports it). */
export const xfeatures = (): bigint => layout().features;
export const xcomponent = (feature: number): XsaveComponent | undefined => layout().comps.get(feature);
