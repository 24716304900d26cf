// What a failed call throws: one VoxplaneError, with what google.rpc.Status says of it.

import { Metadata, ServiceError, status } from "@grpc/grpc-js";
import { Any } from "./gen/google/protobuf/any";
import { BadRequest, RetryInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

/** One bad field of a request: its path (e.g. `ingress_info.webhook`) and what is wrong with it. */
export interface FieldViolation {
  field: string;
  description: string;
}

const STATUS_DETAILS = "grpc-status-details-bin";
const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
const RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo";

/**
 * An RPC failed. `code` is the gRPC status (compare with `status.INVALID_ARGUMENT`), `codeName` its
 * name, `message` the server's sentence; `fieldViolations` names every bad field of an
 * INVALID_ARGUMENT, and `retryDelayMs` is the server's google.rpc.RetryInfo, when it sent one.
 */
export class VoxplaneError extends Error {
  readonly code: status;
  readonly codeName: string;
  readonly fieldViolations: FieldViolation[] = [];
  readonly retryDelayMs: number | undefined;
  readonly metadata: Metadata;

  constructor(code: status, message: string, metadata: Metadata = new Metadata()) {
    super(message);
    this.name = "VoxplaneError";
    this.code = code;
    this.codeName = status[code] ?? `CODE_${code}`;
    this.metadata = metadata;
    try {
      for (const detail of statusDetails(metadata)) {
        if (detail.typeUrl === BAD_REQUEST) {
          for (const { field, description } of BadRequest.decode(detail.value).fieldViolations) {
            this.fieldViolations.push({ field, description });
          }
        } else if (detail.typeUrl === RETRY_INFO) {
          const delay = RetryInfo.decode(detail.value).retryDelay;
          this.retryDelayMs = delay && delay.seconds * 1000 + delay.nanos / 1e6;
        }
      }
    } catch {
      // Details that are not a google.rpc.Status: the code and the message still say what happened.
    }
  }

  /** What grpc-js threw, as a VoxplaneError (anything that is not a gRPC error is returned as it is). */
  static from(error: unknown): unknown {
    if (error instanceof VoxplaneError || !isServiceError(error)) {
      return error;
    }
    return new VoxplaneError(error.code, error.details || status[error.code], error.metadata);
  }
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === "number" && "metadata" in error;
}

function statusDetails(metadata: Metadata): Any[] {
  const [encoded] = metadata.get(STATUS_DETAILS);
  return encoded instanceof Buffer ? Status.decode(encoded).details : [];
}
