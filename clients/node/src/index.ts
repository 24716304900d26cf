// @voxplane/client: the Numbers, Agents, Calls, Webhooks and Messaging services from Node, as in the Fonoster SDK:
// `new Numbers({ endpoint, apiKey }).createNumber({ ... })`.

import { AgentsDefinition } from "./gen/voxplane/agents/v1/agents";
import { NumbersDefinition } from "./gen/voxplane/numbers/v1/numbers";
import { WebhooksDefinition } from "./gen/voxplane/webhooks/v1/webhooks";
import { serviceClient, ServiceClient } from "./client";

export const Numbers = serviceClient(NumbersDefinition);
export type Numbers = ServiceClient<typeof NumbersDefinition>;
export const Agents = serviceClient(AgentsDefinition);
export type Agents = ServiceClient<typeof AgentsDefinition>;
export { Calls, CallsClass, CreateCall, TrackedCall } from "./calls";
export const Webhooks = serviceClient(WebhooksDefinition);
export type Webhooks = ServiceClient<typeof WebhooksDefinition>;
export { FAX_CHUNK, Messaging, MessagingClass, SendFax } from "./messaging";

export { ClientOptions, CallOptions, DeepPartial, DEFAULT_ENDPOINT, serviceClient, ServiceClient } from "./client";
export { FieldViolation, VoxplaneError } from "./errors";
export { status } from "@grpc/grpc-js";
// The generated messages, enums and raw @grpc/grpc-js stubs (`new numbers.NumbersClient(...)`).
export * as numbers from "./gen/voxplane/numbers/v1/numbers";
export * as agents from "./gen/voxplane/agents/v1/agents";
export * as calls from "./gen/voxplane/calls/v1/calls";
export * as webhooks from "./gen/voxplane/webhooks/v1/webhooks";
export * as messaging from "./gen/voxplane/messaging/v1/messaging";
