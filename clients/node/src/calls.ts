// The Calls client: every RPC of the contract, as for the other services, and `createCall` with a
// `track` option that returns the call with the stream of its events from its first one, so nothing
// the call does between the create and the watch is missed.

import { CallOptions, ClientOptions, DeepPartial, serviceClient, ServiceClient } from "./client";
import { Call, CallsDefinition, CreateCallRequest, WatchCallEventsResponse } from "./gen/voxplane/calls/v1/calls";

/** A call just created, and its events (`watchCallEvents({ callRef })`) from NEW_CALL on. */
export interface TrackedCall {
  call: Call;
  events: AsyncIterable<WatchCallEventsResponse>;
}

export interface CreateCall {
  (request: DeepPartial<CreateCallRequest>, options: CallOptions & { track: true }): Promise<TrackedCall>;
  (request?: DeepPartial<CreateCallRequest>, options?: CallOptions & { track?: false }): Promise<Call>;
}

export type Calls = Omit<ServiceClient<typeof CallsDefinition>, "createCall"> & { createCall: CreateCall };
export interface CallsClass {
  new (options?: ClientOptions): Calls;
  readonly definition: typeof CallsDefinition;
}

const Generated = serviceClient(CallsDefinition);
const prototype = (Generated as unknown as { prototype: ServiceClient<typeof CallsDefinition> }).prototype;
const create = prototype.createCall;
Object.assign(prototype, {
  async createCall(
    this: ServiceClient<typeof CallsDefinition>,
    request?: DeepPartial<CreateCallRequest>,
    options: CallOptions & { track?: boolean } = {},
  ): Promise<Call | TrackedCall> {
    const { track, ...callOptions } = options;
    const call = await create.call(this, request, callOptions);
    return track ? { call, events: this.watchCallEvents({ callRef: call.ref }) } : call;
  },
});

export const Calls = Generated as unknown as CallsClass;
