// Requests from plain objects: what the wrapper adds to the generated message types, for any RPC.
//
// Everything here reads the request's shape from the generated type (`create()` has every field),
// never from a list of RPCs, so a renamed field or RPC needs no change here.

import { randomUUID } from "node:crypto";

/** What ts-proto generates for each message type (`MessageFns<T>`), as far as the wrapper uses it. */
export interface MessageType<T = any> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  create(): T;
  fromPartial(object: any): T;
}

export type Fields = Record<string, unknown>;

const REQUEST_ID = "requestId";
const BATCH = "requests"; // a batch create's items, each with its own request_id
const UPDATE_MASK = "updateMask";
// The resource's identity and concurrency token travel with an update but are not fields it changes.
const NOT_MASKED = new Set(["ref", "etag"]);

function newRequestId(): string {
  return randomUUID().replace(/-/g, ""); // 32 hex digits, as the Python clients make them
}

/** The proto (snake_case) name of a field the generated code spells in camelCase. */
export function protoName(field: string): string {
  return field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

function fieldsOf(type: MessageType): Fields {
  return type.create() as Fields;
}

/**
 * An AIP-134 update (`UpdateXRequest { X x; google.protobuf.FieldMask update_mask; }`) from the fields
 * of X alone: `updateNumber({ ref, name, etag })` sends `{ number: { ref, name, etag }, updateMask:
 * ["name"] }`. A request given with its own `updateMask` is sent as it is; so is every request whose
 * type has no `update_mask`. Mask paths are the given fields' proto names, derived from their camelCase
 * (a name with a digit after an underscore, like `line_1`, needs an explicit `updateMask`).
 */
export function withUpdateMask(rpc: string, type: MessageType, request: Fields): Fields {
  const fields = fieldsOf(type);
  const resource = /^update(.)(.*)$/.exec(rpc);
  const key = resource && resource[1].toLowerCase() + resource[2];
  if (!key || !(UPDATE_MASK in fields) || !(key in fields) || UPDATE_MASK in request) {
    return request;
  }
  let sent: Fields = request;
  if (!(key in request)) {
    // The resource's fields, given flat: those that are not the request's own go into the resource.
    const own = Object.entries(request).filter(([name]) => name in fields);
    const its = Object.entries(request).filter(([name]) => !(name in fields));
    sent = { ...Object.fromEntries(own), [key]: Object.fromEntries(its) };
  }
  const changed = Object.entries((sent[key] ?? {}) as Fields)
    .filter(([name, value]) => value !== undefined && !NOT_MASKED.has(name))
    .map(([name]) => protoName(name));
  return { ...sent, [UPDATE_MASK]: changed };
}

/** Throws on a field the request type does not have: a misspelt or renamed field is never dropped silently. */
function checkFields(rpc: string, type: MessageType, request: Fields): void {
  const fields = fieldsOf(type);
  const unknown = Object.keys(request).filter((name) => !(name in fields));
  if (unknown.length) {
    const known = Object.keys(fields).join(", ");
    throw new TypeError(`${rpc} has no field ${unknown.join(", ")} (its fields: ${known})`);
  }
}

/**
 * Whether sending it again is harmless: it carries a request_id (every item of a batch does), which
 * the contract promises makes a repeat return the first result. An empty request_id is filled in.
 */
function fillRequestIds(message: Fields): boolean {
  if (REQUEST_ID in message) {
    message[REQUEST_ID] ||= newRequestId();
    return true;
  }
  const items = message[BATCH];
  if (Array.isArray(items) && items.length && items.every((item) => item && REQUEST_ID in item)) {
    for (const item of items as Fields[]) {
      item[REQUEST_ID] ||= newRequestId();
    }
    return true;
  }
  return false;
}

/** The request message of `rpc` (the method's camelCase name) from a plain object, and whether it may be retried. */
export function buildRequest<T>(rpc: string, type: MessageType<T>, request: unknown): { message: T; idempotent: boolean } {
  if (request !== undefined && (typeof request !== "object" || request === null || Array.isArray(request))) {
    throw new TypeError(`${rpc} takes an object of its request's fields`);
  }
  const fields = withUpdateMask(rpc, type, (request ?? {}) as Fields);
  checkFields(rpc, type, fields);
  const message = type.fromPartial(fields);
  return { message, idempotent: fillRequestIds(message as Fields) };
}

/** The repeated field holding a List response's items: the one named after the RPC, else the only one. */
export function itemsField(rpc: string, response: MessageType): string | undefined {
  const fields = fieldsOf(response);
  const named = rpc.replace(/^list(.)/, (_, first: string) => first.toLowerCase());
  if (Array.isArray(fields[named])) {
    return named;
  }
  const lists = Object.keys(fields).filter((name) => Array.isArray(fields[name]));
  return lists.length === 1 ? lists[0] : undefined;
}

/** Whether a List RPC pages: its request has `page_token` and its response `next_page_token`. */
export function pages(request: MessageType, response: MessageType): boolean {
  return "pageToken" in fieldsOf(request) && "nextPageToken" in fieldsOf(response);
}
