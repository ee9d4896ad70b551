import type { WireStruct, WireValue } from '../api/grpc/grpc-server.js';

/** A google.protobuf.Struct as a grpc-js client decodes it, back to plain JSON (`__proto__` keys kept as data). */
export function structToJson(s: WireStruct): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s.fields)) Object.defineProperty(out, k, { value: valueToJson(v), enumerable: true, writable: true, configurable: true });
  return out;
}

export function valueToJson(v: WireValue & { kind?: string }): unknown {
  switch (v.kind) {
    case 'numberValue':
      return v.numberValue;
    case 'stringValue':
      return v.stringValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return structToJson(v.structValue!);
    case 'listValue':
      return v.listValue!.values.map(valueToJson);
    default:
      return null;
  }
}
