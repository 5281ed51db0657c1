import { z } from "@hono/zod-openapi";
import { idSchema, NameSchema, TimestampSchema } from "./common.ts";

export const OPERATION_STATES = ["pending", "running", "succeeded", "failed", "cancelled"] as const;
export const OperationStateSchema = z.enum(OPERATION_STATES);
export const TERMINAL_OPERATION_STATES: readonly string[] = ["succeeded", "failed", "cancelled"];

export const OPERATION_KINDS = [
  "create-vm-group",
  "update-vm-group",
  "delete-vm-group",
  "replicate-image",
  "distribute-image-version",
  "delete-image",
  "delete-image-version",
  // A record, not a job: a datacenter recreated one of the group's instances by itself.
  "repair-instance",
] as const;

const ByteProgress = {
  step: z.string().nullable().openapi({ example: "transferring-image" }),
  bytes_done: z.number().int().min(0),
  bytes_total: z.number().int().min(0).nullable(),
};

export const OperationProgressSchema = z
  .object({
    ...ByteProgress,
    children: z.array(z.object({ datacenter: NameSchema, ...ByteProgress })),
  })
  .openapi("OperationProgress");
export type OperationProgress = z.infer<typeof OperationProgressSchema>;

export const OperationSchema = z
  .object({
    id: idSchema("operation"),
    project_id: idSchema("project").nullable(),
    kind: z.enum(OPERATION_KINDS),
    target: z.object({ type: z.enum(["image", "vm-group"]), id: z.string() }),
    state: OperationStateSchema,
    done: z.boolean(),
    progress: OperationProgressSchema,
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    result: z.record(z.string(), z.unknown()).nullable(),
    trace_id: z
      .string()
      .regex(/^[0-9a-f]{32}$/)
      .nullable()
      .openapi({
        description:
          "The W3C trace ID of the request that started the operation (its `traceparent`, or one the control plane started): every log line of the control plane and the managers about this operation carries it, so `grep <trace_id>` over their logs tells its story. Null for operations recorded before traces were.",
        example: "4bf92f3577b34da6a3ce929d0e0e4736",
      }),
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("Operation");
export type Operation = z.infer<typeof OperationSchema>;

/** `30s`, `500ms`, `2m`, or a bare number of seconds; at most 60 s. */
export const WaitDurationSchema = z
  .string()
  .regex(/^\d+(\.\d+)?(ms|s|m)?$/, "must be a duration like 30s, 500ms or 1m")
  .transform((text) => {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
    const value = Number(match?.[1]);
    const unit = match?.[2] ?? "s";
    return value * (unit === "ms" ? 1 : unit === "m" ? 60_000 : 1000);
  })
  .refine((ms) => ms <= 60_000, "must be at most 60s");
