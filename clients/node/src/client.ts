// The machinery every service's client shares: options, channel, auth, deadlines, retries, errors,
// pages and streams. A client class is made from the service's generated definition (ts-proto's
// generic-definitions), one method per RPC, so a renamed or new RPC needs no change here.

import * as grpc from "@grpc/grpc-js";
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { VoxplaneError } from "./errors";
import publishedServiceConfig from "./gen/service_config.json";
import { buildRequest, itemsField, MessageType, pages } from "./requests";

export const DEFAULT_ENDPOINT = "127.0.0.1:50051";

/** Where and how to connect. Unset values come from the environment, as in the Python clients. */
export interface ClientOptions {
  /**
   * host:port (`VOXPLANE_ENDPOINT`, default 127.0.0.1:50051); several, as a list or comma-separated, which
   * the channel balances calls over (round_robin); or a gRPC target such as `dns:///voxplane.internal:50051`
   * (round_robin over every address the name has).
   */
  endpoint?: string | readonly string[];
  /** The workspace API key (`VOXPLANE_API_KEY`), sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /**
   * Use TLS (`VOXPLANE_TLS=1`), verifying the server's certificate against the system's roots; giving
   * `rootCertificates` or a client certificate turns it on too.
   */
  tls?: boolean;
  /** The CA certificates to trust instead, a private CA's: PEM, or a PEM file's path (`VOXPLANE_TLS_CA`, a file). */
  rootCertificates?: Buffer | string;
  /**
   * The client's certificate and its key, for a server that asks for one (mutual TLS): PEM, or a file's
   * path (`VOXPLANE_TLS_CLIENT_CERT`, `VOXPLANE_TLS_CLIENT_KEY`).
   */
  certChain?: Buffer | string;
  privateKey?: Buffer | string;
  /**
   * The name the server's certificate is verified by, when not the endpoint's host (the first endpoint's,
   * when there are several) (`VOXPLANE_TLS_SERVER_NAME`).
   */
  serverName?: string;
  /** Milliseconds a unary call may take, its retries included (default 10,000). */
  timeoutMs?: number;
  /**
   * Tries of a call that is safe to repeat when the server is UNAVAILABLE (default 4; gRPC caps reads at 5),
   * and of any call refused over a workspace limit (RESOURCE_EXHAUSTED), each after its RetryInfo delay.
   */
  maxAttempts?: number;
}

/** Options of one call. */
export interface CallOptions {
  /** Overrides the client's `timeoutMs`; a stream has no deadline unless given one. */
  timeoutMs?: number;
}

/** One RPC of a ts-proto generic definition. */
export interface MethodDefinition {
  readonly name: string;
  readonly requestType: MessageType;
  readonly requestStream: boolean;
  readonly responseType: MessageType;
  readonly responseStream: boolean;
}

/** A service as ts-proto's `outputServices=generic-definitions` describes it (`NumbersDefinition`). */
export interface ServiceDefinition {
  readonly name: string;
  readonly fullName: string;
  readonly methods: { readonly [rpc: string]: MethodDefinition };
}

// --- Types of the methods a definition gives a client -------------------------------------------

type Builtin = Date | Buffer | Uint8Array | string | number | boolean | undefined;
/** A message as a plain object: every field optional, at every depth. */
export type DeepPartial<T> = T extends Builtin
  ? T
  : T extends (infer U)[]
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

type Message<F> = F extends { decode(input: Uint8Array): infer T } ? T : never;
type Request<M extends MethodDefinition> = Message<M["requestType"]>;
type Response<M extends MethodDefinition> = Message<M["responseType"]>;
type Rpc<M extends MethodDefinition> = M["responseStream"] extends true
  ? (request?: DeepPartial<Request<M>>, options?: CallOptions) => AsyncIterable<Response<M>>
  : (request?: DeepPartial<Request<M>>, options?: CallOptions) => Promise<Response<M>>;

type Element<T> = T extends readonly (infer E)[] ? E : never;
type Item<K, R> = K extends `list${infer X}`
  ? Uncapitalize<X> extends keyof R
    ? Element<R[Uncapitalize<X>]>
    : { [F in keyof R]: Element<R[F]> }[keyof R]
  : never;
type Paged<M extends MethodDefinition> = Request<M> extends { pageToken: string }
  ? Response<M> extends { nextPageToken: string }
    ? true
    : false
  : false;

/** One method per RPC but the client streams, which a service's own wrapper gives (clientStream). */
type Methods<D extends ServiceDefinition> = {
  [K in keyof D["methods"] as D["methods"][K]["requestStream"] extends true ? never : K]: Rpc<D["methods"][K]>;
};
/** `iterNumbers` for `listNumbers`: every item of every page, for each List RPC that pages. */
type Iterators<D extends ServiceDefinition> = {
  [K in keyof D["methods"] as K extends `list${infer X}`
    ? Paged<D["methods"][K]> extends true
      ? `iter${X}`
      : never
    : never]: (request?: DeepPartial<Request<D["methods"][K]>>, options?: CallOptions) => AsyncIterable<
    Item<K, Response<D["methods"][K]>>
  >;
};

export type ServiceClient<D extends ServiceDefinition> = BaseClient & Methods<D> & Iterators<D>;
export interface ServiceClientClass<D extends ServiceDefinition> {
  new (options?: ClientOptions): ServiceClient<D>;
  readonly definition: D;
}

// --- The service config ---------------------------------------------------------------------------

interface MethodConfig {
  timeout?: string;
  retryPolicy?: { maxAttempts: number };
}

/**
 * The contract's service config (protos/voxplane/service_config.json: reads retried on UNAVAILABLE),
 * with this client's options applied: its deadline is each call's own, and `maxAttempts` bounds the
 * channel's retries of reads as it bounds the client's of creates.
 */
export function serviceConfig(maxAttempts: number): string {
  const config = structuredClone(publishedServiceConfig) as { methodConfig: MethodConfig[] };
  for (const method of config.methodConfig) {
    delete method.timeout;
    if (method.retryPolicy && maxAttempts < 2) {
      delete method.retryPolicy;
    } else if (method.retryPolicy) {
      method.retryPolicy.maxAttempts = Math.min(maxAttempts, 5);
    }
  }
  return JSON.stringify(config);
}

/** The service config of a channel over several addresses: round_robin, where gRPC's default (pick_first) sends every call to one. */
function balanced(config: string): string {
  return JSON.stringify({ ...JSON.parse(config), loadBalancingConfig: [{ round_robin: {} }] });
}

// --- Where a channel connects -------------------------------------------------------------------------

// The name-resolver schemes of gRPC targets: an endpoint starting with one is gRPC's to read.
const TARGET = /^(dns|ipv4|ipv6|unix|unix-abstract|vsock|xds):/;
// The scheme of several endpoints, the target of this client's resolver (EndpointsResolver).
const ENDPOINTS = "voxplane-endpoints";

/** Where a channel connects: gRPC's target, and whether it balances over several addresses (round_robin). */
export interface Target {
  target: string;
  balanced: boolean;
}

function hostPort(address: string): grpc.experimental.HostPort {
  const found = grpc.experimental.splitHostPort(address);
  if (!found || !found.host || found.port === undefined) {
    throw new Error(`endpoint ${JSON.stringify(address)} is not host:port`);
  }
  return found;
}

/**
 * The gRPC target of an endpoint: a gRPC target as it is (`dns:///voxplane.internal:50051` balances over
 * every address the name has), one host:port as it is, or several (a list, or comma-separated) as one
 * target of this client's resolver, which looks each up when the channel connects and again when it
 * reconnects.
 */
export function target(endpoint: string | readonly string[]): Target {
  const text = (typeof endpoint === "string" ? endpoint : endpoint.join(",")).trim();
  if (TARGET.test(text)) {
    const [scheme, ...rest] = text.split(":");
    return { target: text, balanced: scheme === "dns" || rest.join(":").includes(",") };
  }
  const addresses = text
    .split(",")
    .map((address) => address.trim())
    .filter(Boolean);
  addresses.forEach(hostPort);
  if (addresses.length === 1) {
    return { target: addresses[0], balanced: false };
  }
  return { target: `${ENDPOINTS}:${addresses.join(",")}`, balanced: true };
}

/**
 * The resolver of several endpoints: each host:port one endpoint of the channel (round_robin takes
 * turns over them), with every address its host has (IPv4 or IPv6; the endpoint's connection tries them
 * in turn). Looked up with the system's resolver (getaddrinfo: /etc/hosts too), when the channel
 * connects and when it asks again (a connection lost). The channel's authority, which a TLS certificate
 * is verified by, is the first endpoint's host.
 */
class EndpointsResolver implements grpc.experimental.Resolver {
  private readonly endpoints: grpc.experimental.HostPort[];
  private generation = 0; // a lookup answers only if no destroy() came after it began

  constructor(
    target: grpc.experimental.GrpcUri,
    private readonly listener: grpc.experimental.ResolverListener,
  ) {
    this.endpoints = target.path.split(",").map(hostPort);
  }

  updateResolution(): void {
    const generation = ++this.generation;
    void Promise.allSettled(
      this.endpoints.map(async ({ host, port }) => ({
        addresses: (await lookup(host, { all: true })).map((found) => ({ host: found.address, port: port as number })),
      })),
    ).then((looked) => {
      if (generation !== this.generation) {
        return;
      }
      const found = looked.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
      const failed = looked.flatMap((result) => (result.status === "rejected" ? [String(result.reason)] : []));
      this.listener(
        found.length
          ? grpc.experimental.statusOrFromValue(found)
          : grpc.experimental.statusOrFromError({
              code: grpc.status.UNAVAILABLE,
              details: `no endpoint could be looked up: ${failed.join("; ")}`,
              metadata: new grpc.Metadata(),
            }),
        {},
        null,
        failed.join("; "),
      );
    });
  }

  destroy(): void {
    this.generation++;
  }

  static getDefaultAuthority(target: grpc.experimental.GrpcUri): string {
    return target.path.split(",")[0].trim();
  }
}

grpc.experimental.registerResolver(ENDPOINTS, EndpointsResolver);

// --- The client -------------------------------------------------------------------------------------

/** PEM given as a Buffer, as text, or as the path of a file holding it; undefined when not given. */
function pem(value: Buffer | string | undefined): Buffer | undefined {
  if (value === undefined || value === "" || Buffer.isBuffer(value)) {
    return value || undefined;
  }
  return value.trimStart().startsWith("-----BEGIN") ? Buffer.from(value) : readFileSync(value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What every service's client has besides its RPCs. */
export class BaseClient {
  readonly endpoint: string;
  protected readonly options: Required<Pick<ClientOptions, "timeoutMs" | "maxAttempts">>;
  private readonly channel: grpc.Client;
  private readonly apiKey: string | undefined;

  constructor(
    private readonly definition: ServiceDefinition,
    options: ClientOptions = {},
  ) {
    const env = process.env;
    const endpoint = options.endpoint?.length ? options.endpoint : env.VOXPLANE_ENDPOINT || DEFAULT_ENDPOINT;
    this.endpoint = typeof endpoint === "string" ? endpoint : endpoint.join(",");
    this.apiKey = options.apiKey || env.VOXPLANE_API_KEY || undefined;
    this.options = { timeoutMs: options.timeoutMs ?? 10_000, maxAttempts: options.maxAttempts ?? 4 };
    const roots = pem(options.rootCertificates || env.VOXPLANE_TLS_CA);
    const chain = pem(options.certChain || env.VOXPLANE_TLS_CLIENT_CERT);
    const key = pem(options.privateKey || env.VOXPLANE_TLS_CLIENT_KEY);
    if (!chain !== !key) {
      throw new Error("a client certificate needs its private key, and a key its certificate");
    }
    const tls = options.tls ?? (["1", "true", "yes"].includes(env.VOXPLANE_TLS ?? "") || !!roots || !!chain);
    const credentials = tls
      ? grpc.credentials.createSsl(roots ?? null, key ?? null, chain ?? null)
      : grpc.credentials.createInsecure();
    const serverName = options.serverName || env.VOXPLANE_TLS_SERVER_NAME;
    const where = target(this.endpoint);
    const config = serviceConfig(this.options.maxAttempts);
    this.channel = new grpc.Client(where.target, credentials, {
      "grpc.service_config": where.balanced ? balanced(config) : config,
      "grpc.enable_retries": 1,
      "grpc.primary_user_agent": "voxplane-node",
      ...(tls && serverName ? { "grpc.ssl_target_name_override": serverName } : {}),
    });
  }

  /** Closes the channel; calls made after this fail. */
  close(): void {
    this.channel.close();
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.apiKey) {
      metadata.set("authorization", `Bearer ${this.apiKey}`);
    }
    return metadata;
  }

  /** The method's full name: "voxplane.numbers.v1.Numbers/CreateNumber". */
  private fullName(method: MethodDefinition): string {
    return `${this.definition.fullName}/${method.name}`;
  }

  /** What grpc-js's generic calls take before the request: the method's path and its (de)serializers. */
  private wire<T>(method: MethodDefinition) {
    return [
      `/${this.fullName(method)}`,
      (value: unknown) => Buffer.from(method.requestType.encode(value).finish()),
      (bytes: Buffer) => method.responseType.decode(bytes) as T,
    ] as const;
  }

  private once<T>(method: MethodDefinition, message: unknown, deadline: number): Promise<T> {
    return new Promise((resolve, reject) => {
      this.channel.makeUnaryRequest<unknown, T>(
        ...this.wire<T>(method),
        message,
        this.metadata(),
        { deadline },
        (error, response) => (error ? reject(VoxplaneError.from(error)) : resolve(response as T)),
      );
    });
  }

  /**
   * One unary call. Reads are retried by the channel (the service config); a request carrying a
   * request_id (creates: one is filled in when empty) is retried here, on UNAVAILABLE, after the
   * server's RetryInfo delay or a jittered backoff, within the call's deadline. Any call the server
   * refused over a workspace limit (RESOURCE_EXHAUSTED with a RetryInfo: it did nothing) is retried
   * here after that delay, within the deadline and maxAttempts.
   */
  protected async unary<T>(rpc: string, request: unknown, options: CallOptions = {}): Promise<T> {
    const method = this.definition.methods[rpc];
    const { message, idempotent } = buildRequest(this.fullName(method), method.requestType, request);
    const deadline = Date.now() + (options.timeoutMs ?? this.options.timeoutMs);
    const attempts = idempotent ? this.options.maxAttempts : 1;
    for (let made = 1; ; made++) {
      try {
        return await this.once<T>(method, message, deadline);
      } catch (error) {
        const limited =
          error instanceof VoxplaneError &&
          error.code === grpc.status.RESOURCE_EXHAUSTED &&
          error.retryDelayMs !== undefined &&
          made < this.options.maxAttempts;
        const retry =
          limited || (error instanceof VoxplaneError && error.code === grpc.status.UNAVAILABLE && made < attempts);
        const delay = retry ? (error.retryDelayMs ?? 50 * 2 ** (made - 1) * (0.5 + Math.random() / 2)) : 0;
        if (!retry || Date.now() + delay >= deadline) {
          throw error;
        }
        await sleep(delay);
      }
    }
  }

  /** A server stream as an async iterable; breaking out of the loop cancels the call. */
  protected async *stream<T>(rpc: string, request: unknown, options: CallOptions = {}): AsyncGenerator<T> {
    const method = this.definition.methods[rpc];
    const { message } = buildRequest(this.fullName(method), method.requestType, request);
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    const call = this.channel.makeServerStreamRequest<unknown, T>(...this.wire<T>(method), message, this.metadata(), {
      deadline,
    });
    try {
      for await (const response of call) {
        yield response as T;
      }
    } catch (error) {
      throw VoxplaneError.from(error);
    } finally {
      // A no-op once the stream ended; stops the server when the caller stopped early. A CANCELLED
      // reported after the loop has let go of the stream is nobody's error: it must not go unhandled.
      call.on("error", () => {});
      call.cancel();
    }
  }

  /**
   * A client stream: `requests` sent in order (each built from a plain object as a unary request is,
   * waiting for the channel to drain when its buffer is full), then the server's one response. Not
   * retried: a stream is not replayed.
   */
  protected async clientStream<T>(rpc: string, requests: Iterable<unknown>, options: CallOptions = {}): Promise<T> {
    const method = this.definition.methods[rpc];
    const deadline = Date.now() + (options.timeoutMs ?? this.options.timeoutMs);
    let call: grpc.ClientWritableStream<unknown> | undefined;
    const answered = new Promise<T>((resolve, reject) => {
      call = this.channel.makeClientStreamRequest<unknown, T>(
        ...this.wire<T>(method),
        this.metadata(),
        { deadline },
        (error, response) => (error ? reject(VoxplaneError.from(error)) : resolve(response as T)),
      );
    });
    const stream = call as grpc.ClientWritableStream<unknown>;
    let ended = false;
    answered.catch(() => {}).finally(() => (ended = true)); // an early answer (an error) stops the writes
    try {
      for (const request of requests) {
        const { message } = buildRequest(this.fullName(method), method.requestType, request);
        if (ended) {
          break;
        }
        if (!stream.write(message)) {
          await new Promise<void>((drained) => {
            stream.once("drain", drained);
            answered.catch(() => {}).finally(drained);
          });
        }
      }
    } catch (error) {
      stream.cancel(); // a request that could not be built: the server must not take what came before it
      throw error;
    }
    stream.end();
    return answered;
  }

  /** Every item of every page of a List RPC, asking for the next page as the caller reaches it. */
  protected async *walk<T>(rpc: string, items: string, request: unknown, options?: CallOptions): AsyncGenerator<T> {
    const query = { ...(request as object) };
    for (;;) {
      const page = await this.unary<Record<string, unknown>>(rpc, query, options);
      yield* page[items] as T[];
      if (!page.nextPageToken) {
        return;
      }
      Object.assign(query, { pageToken: page.nextPageToken });
    }
  }
}

/**
 * The client class of a service, from its generated definition: `new Numbers({ endpoint, apiKey })`
 * has `createNumber(request)` and every other RPC of NumbersDefinition (unary ones return a Promise,
 * server streams an AsyncIterable), and `iterNumbers(request)` for each List RPC that pages.
 */
export function serviceClient<D extends ServiceDefinition>(definition: D): ServiceClientClass<D> {
  class Client extends BaseClient {
    static readonly definition = definition;

    constructor(options?: ClientOptions) {
      super(definition, options);
    }
  }
  const methods: Record<string, unknown> = {};
  for (const [rpc, method] of Object.entries(definition.methods)) {
    if (method.requestStream) {
      continue; // a client stream takes its own wrapper (Messaging's sendFax), on clientStream
    }
    methods[rpc] = method.responseStream
      ? function (this: Client, request?: unknown, options?: CallOptions) {
          return this.stream(rpc, request, options);
        }
      : function (this: Client, request?: unknown, options?: CallOptions) {
          return this.unary(rpc, request, options);
        };
    const items = itemsField(rpc, method.responseType);
    if (rpc.startsWith("list") && items && pages(method.requestType, method.responseType)) {
      methods[`iter${rpc.slice("list".length)}`] = function (this: Client, request?: unknown, options?: CallOptions) {
        return this.walk(rpc, items, request, options);
      };
    }
  }
  Object.assign(Client.prototype, methods);
  Object.defineProperty(Client, "name", { value: definition.name });
  return Client as unknown as ServiceClientClass<D>;
}
