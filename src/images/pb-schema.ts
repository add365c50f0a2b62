// The schema side of crest's protocol-buffers (proto2) codec: the
// descriptors scripts/gen-images.mjs writes into ./gen (a MessageType per
// message, holding its FieldSpecs), what encode() accepts, and the error of
// both directions. No reflection on .proto text at run time.

export type ScalarKind =
  | "double" | "float"
  | "int32" | "uint32" | "sint32" | "fixed32" | "sfixed32"
  | "int64" | "uint64" | "sint64" | "fixed64" | "sfixed64"
  | "bool" | "string" | "bytes";

export type FieldKind = ScalarKind | "enum" | "message";
export type Label = "required" | "optional" | "repeated";

/** How crit prints a field in --pretty JSON (CRIU's `(criu).xxx` options). No effect on the wire. */
export interface FieldHints {
  readonly hex?: boolean;
  readonly ipadd?: boolean;
  readonly flags?: string;
  readonly dev?: boolean;
  readonly odev?: boolean;
  readonly dict?: string;
  readonly conv?: string;
}

export interface EnumSpec {
  /** Full proto name, e.g. "core_entry.march". */
  readonly name: string;
  readonly values: Readonly<Record<string, number>>;
}

export interface FieldSpec {
  readonly name: string;
  readonly number: number;
  readonly label: Label;
  readonly kind: FieldKind;
  readonly enum?: EnumSpec;
  /** A thunk, because messages may refer to themselves (cgroup_dir_entry). */
  readonly message?: () => MessageType<unknown>;
  readonly packed?: boolean;
  readonly default?: number | bigint | boolean | string | Buffer;
  readonly hints?: FieldHints;
}

export interface MessageType<T> {
  /** Full proto name, e.g. "core_entry". */
  readonly name: string;
  /** In declaration order. */
  readonly fields: readonly FieldSpec[];
  /** Type-level only: ties the descriptor to its interface. */
  readonly __type?: T;
}

/** Builds a descriptor; used by the generated code. */
export function message<T>(name: string, fields: readonly FieldSpec[]): MessageType<T> {
  return { name, fields };
}

const enumSpecs = new WeakMap<object, EnumSpec>();

/** One EnumSpec per generated enum object, shared by every field using it. */
export function enumOf(name: string, values: Readonly<Record<string, number>>): EnumSpec {
  let spec = enumSpecs.get(values);
  if (!spec) {
    spec = { name, values };
    enumSpecs.set(values, spec);
  }
  return spec;
}

type Scalar = number | bigint | boolean | string;
type ArrayKeys<T> = { [K in keyof T]-?: NonNullable<T[K]> extends readonly unknown[] ? K : never }[keyof T];

/**
 * What encode() accepts for a message T: like T, but repeated fields may be
 * left out and bytes may be any Uint8Array.
 */
export type EncodeInput<T> = T extends Scalar
  ? T
  : T extends Uint8Array
    ? Uint8Array
    : T extends readonly (infer E)[]
      ? readonly EncodeInput<E>[]
      : { [K in keyof T as K extends ArrayKeys<T> ? never : K]: EncodeInput<T[K]> } & {
          [K in keyof T as K extends ArrayKeys<T> ? K : never]?: EncodeInput<T[K]>;
        };

/** Bad protobuf data, or a message that cannot be encoded. */
export class ImageFormatError extends Error {
  constructor(
    /** Proto name of the message being decoded or encoded. */
    readonly type: string,
    readonly detail: string,
    /** Byte offset in the decoded buffer; undefined for encode errors. */
    readonly offset?: number,
  ) {
    super(offset === undefined ? `${type}: ${detail}` : `${type} at byte ${offset}: ${detail}`);
    this.name = "ImageFormatError";
  }
}

/** The wire type of a field's values (unpacked). */
export function wireOf(kind: FieldKind): number {
  switch (kind) {
    case "double": case "fixed64": case "sfixed64": return 1;
    case "float": case "fixed32": case "sfixed32": return 5;
    case "string": case "bytes": case "message": return 2;
    default: return 0;
  }
}

/** How deep messages may nest, decoding or encoding. */
export const MAX_DEPTH = 64;
