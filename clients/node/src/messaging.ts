// The Messaging client: every RPC of the contract, as for the other services, and `sendFax`, which
// streams the PDF to the client-streaming SendFax in chunks of at most 1 MB (the server's receive
// limit stays small for every other RPC).

import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { CallOptions, ClientOptions, DeepPartial, serviceClient, ServiceClient } from "./client";
import { Fax, FaxHeader, MessagingDefinition, SendFaxRequest } from "./gen/voxplane/messaging/v1/messaging";

/** The most SendFax takes in one message. */
export const FAX_CHUNK = 1024 * 1024;

/** SendFax's messages: the header with the first chunk, then the rest of the PDF, a chunk each. */
export function* faxRequests(pdf: Uint8Array, header: DeepPartial<FaxHeader>): Generator<DeepPartial<SendFaxRequest>> {
  const chunk = (start: number) => {
    const length = Math.min(FAX_CHUNK, pdf.length - start);
    return Buffer.from(pdf.buffer, pdf.byteOffset + start, Math.max(length, 0)); // a view: nothing copied
  };
  yield { header, chunk: chunk(0) };
  for (let start = FAX_CHUNK; start < pdf.length; start += FAX_CHUNK) {
    yield { chunk: chunk(start) };
  }
}

/**
 * Sends `pdf` (its bytes, or a path to read it from) as a fax: `header` has `faxlineRef`,
 * `destination`, and optionally `filename` (by default a path's file name), `sendTime`, `webhook`.
 * Returns the fax once the server has checked the PDF (PENDING, or SCHEDULED).
 */
export type SendFax = (pdf: Uint8Array | string, header: DeepPartial<FaxHeader>, options?: CallOptions) => Promise<Fax>;

export type Messaging = ServiceClient<typeof MessagingDefinition> & { sendFax: SendFax };
export interface MessagingClass {
  new (options?: ClientOptions): Messaging;
  readonly definition: typeof MessagingDefinition;
}

const Generated = serviceClient(MessagingDefinition);

class MessagingClient extends (Generated as unknown as new (options?: ClientOptions) => ServiceClient<
  typeof MessagingDefinition
>) {
  async sendFax(pdf: Uint8Array | string, header: DeepPartial<FaxHeader>, options?: CallOptions): Promise<Fax> {
    const bytes = typeof pdf === "string" ? await readFile(pdf) : pdf;
    const named = typeof pdf === "string" && !header.filename ? { ...header, filename: basename(pdf) } : header;
    return this.clientStream<Fax>("sendFax", faxRequests(bytes, named), options);
  }
}
Object.defineProperty(MessagingClient, "name", { value: MessagingDefinition.name });
Object.defineProperty(MessagingClient, "definition", { value: MessagingDefinition });

export const Messaging = MessagingClient as unknown as MessagingClass;
