// The framework's public surface, for resources and data sources.
export { decodeJson } from "./cty/json.ts";
export { decodeMsgpack, encodeMsgpack } from "./cty/msgpack.ts";
export { type CtyType, listOf, mapOf, objectOf, setOf, tupleOf } from "./cty/types.ts";
export {
  CtyNumber,
  type CtyValue,
  containsUnknown,
  Dynamic,
  isUnknown,
  num,
  type ObjectValue,
  Unknown,
  unknown,
  valuesEqual,
} from "./cty/values.ts";
export {
  type CallContext,
  type DataSourceDefinition,
  defineDataSource,
  defineProvider,
  defineResource,
  type ProviderDefinition,
  type ResourceDefinition,
} from "./framework/definitions.ts";
export {
  type AttributePath,
  type Diagnostic,
  DiagnosticError,
  Diagnostics,
} from "./framework/diagnostics.ts";
export type { Logger } from "./framework/logger.ts";
export {
  type PlanModifier,
  requiresReplace,
  requiresReplaceIf,
  useStateForUnknown,
} from "./framework/plan-modifiers.ts";
export type { Attribute, Block, NestedBlock, NestingMode, Schema } from "./framework/schema.ts";
export { serveProvider } from "./server/serve.ts";
