// Requests from plain objects: what the wrapper adds to the generated message types, for any RPC.
//
// Everything here reads the request's shape from the generated code (`create()` has every field; the
// mask paths of updates come from update_masks.json), never from a list of RPCs, so a renamed field
// or RPC needs no change here.

import { randomUUID } from "node:crypto";
import updateMasks from "./gen/update_masks.json";

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
// What identifies or guards an update rather than being changed by it: never in its mask.
const NOT_CHANGES = new Set(["ref", "etag", UPDATE_MASK]);

function newRequestId(): string {
  return randomUUID().replace(/-/g, ""); // 32 hex digits, as the Python clients make them
}

function fieldsOf(type: MessageType): Fields {
  return type.create() as Fields;
}

/** An update's fields by camelCase name: each its mask path, or a sub-message's path and fields. */
export interface MaskPaths {
  [field: string]: string | { path: string; fields: MaskPaths };
}

function isMessage(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array) && !(value instanceof Date);
}

/** The mask paths of the fields given: a sub-message given as an object names its fields, one path each. */
export function maskPaths(paths: MaskPaths, request: Fields, prefix = ""): string[] {
  return Object.entries(request).flatMap(([name, value]) => {
    const field = paths[name];
    if (field === undefined || value === undefined || (!prefix && NOT_CHANGES.has(name))) {
      return [];
    }
    if (typeof field === "string") {
      return [prefix + field];
    }
    return isMessage(value) ? maskPaths(field.fields, value, `${prefix}${field.path}.`) : [prefix + field.path];
  });
}

/**
 * An update (AIP-134: its request has a google.protobuf.FieldMask `update_mask`) changes the fields it
 * is given, as in the Python clients: `updateNumber({ ref, name: "", etag })` sends `updateMask:
 * ["name"]`, so a field given its default is cleared and the others are left alone. A request with
 * its own `updateMask`, and every request without that field (`paths` undefined), is sent as it is.
 * `paths` is the RPC's entry in update_masks.json, which `make proto` derives from the protos.
 */
export function withUpdateMask(paths: MaskPaths | undefined, request: Fields): Fields {
  if (paths === undefined || UPDATE_MASK in request) {
    return request;
  }
  return { ...request, [UPDATE_MASK]: maskPaths(paths, request) };
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

/**
 * The request message of `rpc` from a plain object, and whether it may be retried. `rpc` names the
 * method as its path does ("voxplane.numbers.v1.Numbers/UpdateNumber").
 */
export function buildRequest<T>(rpc: string, type: MessageType<T>, request: unknown): { message: T; idempotent: boolean } {
  if (request !== undefined && (typeof request !== "object" || request === null || Array.isArray(request))) {
    throw new TypeError(`${rpc} takes an object of its request's fields`);
  }
  const fields = withUpdateMask((updateMasks as Record<string, MaskPaths>)[rpc], (request ?? {}) as Fields);
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
