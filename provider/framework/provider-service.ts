// The tfplugin6.Provider service: decodes DynamicValues with the schemas, calls the
// provider's resources and data sources, and turns results and errors into responses and
// diagnostics. Transport-free: it maps decoded request objects to response objects.

import { decodeJson } from "../cty/json.ts";
import { decodeMsgpack, encodeMsgpack } from "../cty/msgpack.ts";
import type { CtyType } from "../cty/types.ts";
import { type CtyValue, isPlainObject, type ObjectValue } from "../cty/values.ts";
import type { ProtoObject } from "../protocol/protobuf.ts";
import type {
  CallContext,
  DataSourceDefinition,
  LaunchEnvironment,
  ProviderDefinition,
  ResourceDefinition,
} from "./definitions.ts";
import {
  type AttributePath,
  attributePathToProto,
  Diagnostics,
  diagnosticFromError,
  diagnosticToProto,
} from "./diagnostics.ts";
import type { Logger } from "./logger.ts";
import { completeObject, findUnknown, planResourceChange } from "./plan.ts";
import { blockType, checkSchema, type Schema, schemaToProto } from "./schema.ts";

export type RpcHandler = (request: ProtoObject, call: { signal: AbortSignal }) => Promise<ProtoObject>;

export type ProviderRpc =
  | "GetMetadata"
  | "GetProviderSchema"
  | "ValidateProviderConfig"
  | "ConfigureProvider"
  | "StopProvider"
  | "ValidateResourceConfig"
  | "ValidateDataResourceConfig"
  | "UpgradeResourceState"
  | "ReadResource"
  | "PlanResourceChange"
  | "ApplyResourceChange"
  | "ImportResourceState"
  | "ReadDataSource";

export type ProviderService = Record<ProviderRpc, RpcHandler>;

interface DynamicValueMessage {
  msgpack?: Uint8Array;
  json?: Uint8Array;
}

function decodeDynamic(type: CtyType, message: unknown): CtyValue {
  const value = message as DynamicValueMessage | undefined;
  if (value?.msgpack?.length) return decodeMsgpack(type, value.msgpack);
  if (value?.json?.length) return decodeJson(type, value.json);
  return null;
}

function decodeObject(type: CtyType, message: unknown): ObjectValue | null {
  const value = decodeDynamic(type, message);
  return isPlainObject(value) ? value : null;
}

const encodeDynamic = (type: CtyType, value: CtyValue) => ({ msgpack: encodeMsgpack(type, value) });

const diagnosticsField = (diagnostics: Diagnostics) => diagnostics.items.map(diagnosticToProto);

interface Entry<Definition> {
  definition: Definition;
  type: CtyType;
}

export function createProviderService<P>(
  provider: ProviderDefinition<P>,
  log: Logger,
  launch: LaunchEnvironment = { env: process.env, cwd: process.cwd() },
): ProviderService {
  checkSchema(provider.typeName, provider.schema);
  const resources = new Map<string, Entry<ResourceDefinition<P>>>();
  const dataSources = new Map<string, Entry<DataSourceDefinition<P>>>();
  for (const definition of provider.resources) {
    checkSchema(definition.typeName, definition.schema);
    resources.set(definition.typeName, { definition, type: blockType(definition.schema) });
  }
  for (const definition of provider.dataSources) {
    checkSchema(definition.typeName, definition.schema);
    dataSources.set(definition.typeName, { definition, type: blockType(definition.schema) });
  }
  const providerType = blockType(provider.schema);
  let providerData = undefined as P;

  // StopProvider (Ctrl-C) cancels every call in flight and any that races in after it, as
  // the SDKs' stop context does: Terraform makes no further useful calls to a stopped provider.
  const stopController = new AbortController();
  const contextFor = (call: { signal: AbortSignal }, typeName: string): CallContext<P> => ({
    signal: AbortSignal.any([call.signal, stopController.signal]),
    log: log.with({ tf_resource_type: typeName }),
    providerData,
  });

  const lookup = <D>(table: Map<string, Entry<D>>, typeName: unknown, kind: string): Entry<D> => {
    const entry = table.get(String(typeName));
    if (!entry) throw new Error(`this provider has no ${kind} type "${String(typeName)}"`);
    return entry;
  };

  /** Runs `body`; a thrown error becomes an error diagnostic alongside `fallback`. */
  const guarded = async (
    diagnostics: Diagnostics,
    signal: AbortSignal | undefined,
    body: () => Promise<ProtoObject>,
    fallback: () => ProtoObject,
  ): Promise<ProtoObject> => {
    try {
      return { ...(await body()), diagnostics: diagnosticsField(diagnostics) };
    } catch (error) {
      const cancelled = signal?.aborted === true;
      diagnostics.append([
        cancelled
          ? { severity: "error", summary: "Operation cancelled", detail: errorText(error) }
          : diagnosticFromError(error),
      ]);
      log.error("call failed", { error: errorText(error) });
      return { ...fallback(), diagnostics: diagnosticsField(diagnostics) };
    }
  };

  /** Resources and data sources validate their configuration the same way. */
  const validateConfigOf = <
    D extends { validateConfig?: (config: ObjectValue, diagnostics: Diagnostics) => unknown },
  >(
    table: Map<string, Entry<D>>,
    kind: string,
    request: ProtoObject,
  ) => {
    const diagnostics = new Diagnostics();
    return guarded(
      diagnostics,
      undefined,
      async () => {
        const { definition, type } = lookup(table, request.type_name, kind);
        const config = decodeObject(type, request.config);
        if (config && definition.validateConfig) await definition.validateConfig(config, diagnostics);
        return {};
      },
      () => ({}),
    );
  };

  const finishState = (schema: Schema, base: ObjectValue, result: ObjectValue, diagnostics: Diagnostics) => {
    const state = completeObject(schema, { ...base, ...result });
    const unknownAt = findUnknown(state);
    if (unknownAt) {
      diagnostics.error(
        "Provider returned an unknown value",
        "The provider must set every computed attribute after apply. This is a bug in the provider.",
        unknownAt,
      );
    }
    return state;
  };

  return {
    async GetMetadata() {
      return {
        server_capabilities: { plan_destroy: true, get_provider_schema_optional: true },
        resources: [...resources.keys()].map((type_name) => ({ type_name })),
        data_sources: [...dataSources.keys()].map((type_name) => ({ type_name })),
      };
    },

    async GetProviderSchema() {
      return {
        provider: schemaToProto(provider.schema),
        resource_schemas: Object.fromEntries(
          [...resources].map(([name, { definition }]) => [name, schemaToProto(definition.schema)]),
        ),
        data_source_schemas: Object.fromEntries(
          [...dataSources].map(([name, { definition }]) => [name, schemaToProto(definition.schema)]),
        ),
        server_capabilities: { plan_destroy: true, get_provider_schema_optional: true },
      };
    },

    async ValidateProviderConfig(request) {
      const diagnostics = new Diagnostics();
      return guarded(
        diagnostics,
        undefined,
        async () => {
          const config = decodeObject(providerType, request.config);
          if (config && provider.validateConfig) await provider.validateConfig(config, diagnostics);
          return {};
        },
        () => ({}),
      );
    },

    async ConfigureProvider(request, call) {
      const diagnostics = new Diagnostics();
      return guarded(
        diagnostics,
        call.signal,
        async () => {
          const config = decodeObject(providerType, request.config) ?? completeObject(provider.schema, {});
          providerData = await provider.configure(
            { config, terraformVersion: String(request.terraform_version), diagnostics, launch },
            { signal: call.signal, log },
          );
          return {};
        },
        () => ({}),
      );
    },

    async StopProvider() {
      log.info("stop requested: cancelling calls in flight");
      stopController.abort(new Error("Terraform asked the provider to stop"));
      return { Error: "" };
    },

    ValidateResourceConfig: (request) => validateConfigOf(resources, "resource", request),

    ValidateDataResourceConfig: (request) => validateConfigOf(dataSources, "data source", request),

    async UpgradeResourceState(request, call) {
      const diagnostics = new Diagnostics();
      return guarded(
        diagnostics,
        call.signal,
        async () => {
          const { definition, type } = lookup(resources, request.type_name, "resource");
          const rawState = request.raw_state as { json?: Uint8Array } | undefined;
          if (!rawState?.json?.length)
            throw new Error("stored state has no JSON form (flatmap state is not supported)");
          const version = Number(request.version);
          const json = new TextDecoder().decode(rawState.json);
          const currentVersion = definition.schema.version ?? 0;
          let state: CtyValue;
          if (version !== currentVersion && definition.upgradeState) {
            const context = contextFor(call, definition.typeName);
            state = completeObject(definition.schema, definition.upgradeState({ version, json }, context));
          } else {
            state = decodeJson(type, json);
          }
          return { upgraded_state: encodeDynamic(type, state) };
        },
        () => ({}),
      );
    },

    async ReadResource(request, call) {
      const diagnostics = new Diagnostics();
      const entry = resources.get(String(request.type_name));
      const keepState = () => ({ new_state: request.current_state, private: request.private });
      const context = contextFor(call, String(request.type_name));
      return guarded(
        diagnostics,
        context.signal,
        async () => {
          const { definition, type } = lookup(resources, request.type_name, "resource");
          const state = decodeObject(type, request.current_state);
          if (state === null) return { new_state: encodeDynamic(type, null), private: request.private };
          const result = await definition.read({ state }, context);
          const newState =
            result === null ? null : finishState(definition.schema, state, result, diagnostics);
          return { new_state: encodeDynamic(type, newState), private: request.private };
        },
        entry ? keepState : () => ({}),
      );
    },

    async PlanResourceChange(request, call) {
      const diagnostics = new Diagnostics();
      const context = contextFor(call, String(request.type_name));
      return guarded(
        diagnostics,
        context.signal,
        async () => {
          const { definition, type } = lookup(resources, request.type_name, "resource");
          const prior = decodeObject(type, request.prior_state);
          const proposed = decodeObject(type, request.proposed_new_state);
          const config = decodeObject(type, request.config);
          const { planned, requiresReplace } = planResourceChange({
            schema: definition.schema,
            prior,
            proposed,
            config,
          });
          if (planned && config && definition.modifyPlan) {
            await definition.modifyPlan({ config, prior, planned, requiresReplace, diagnostics }, context);
          }
          return {
            planned_state: encodeDynamic(type, planned),
            requires_replace: requiresReplace.map((path: AttributePath) => attributePathToProto(path)),
            planned_private: request.prior_private,
          };
        },
        () => ({}),
      );
    },

    async ApplyResourceChange(request, call) {
      const diagnostics = new Diagnostics();
      const context = contextFor(call, String(request.type_name));
      const entry = resources.get(String(request.type_name));
      // On failure Terraform records whatever new_state says exists: nothing after a failed
      // create, the prior object after a failed update or delete.
      const fallback = () => ({
        new_state: request.prior_state ?? (entry ? encodeDynamic(entry.type, null) : undefined),
      });
      return guarded(
        diagnostics,
        context.signal,
        async () => {
          const { definition, type } = lookup(resources, request.type_name, "resource");
          const prior = decodeObject(type, request.prior_state);
          const planned = decodeObject(type, request.planned_state);
          const config = decodeObject(type, request.config) ?? completeObject(definition.schema, {});
          let newState: ObjectValue | null;
          if (planned === null) {
            if (prior !== null) await definition.delete({ prior }, context);
            newState = null;
          } else if (prior === null) {
            const created = await definition.create({ plan: planned, config }, context);
            newState = finishState(definition.schema, planned, created, diagnostics);
          } else {
            if (!definition.update) throw new Error(`${definition.typeName} cannot be updated in place`);
            const updated = await definition.update({ plan: planned, prior, config }, context);
            newState = finishState(definition.schema, planned, updated, diagnostics);
          }
          return { new_state: encodeDynamic(type, newState), private: request.planned_private };
        },
        fallback,
      );
    },

    async ImportResourceState(request, call) {
      const diagnostics = new Diagnostics();
      const context = contextFor(call, String(request.type_name));
      return guarded(
        diagnostics,
        context.signal,
        async () => {
          const { definition, type } = lookup(resources, request.type_name, "resource");
          const id = String(request.id);
          const partial = definition.importState ? await definition.importState({ id }, context) : { id };
          const state = completeObject(definition.schema, partial);
          return {
            imported_resources: [{ type_name: definition.typeName, state: encodeDynamic(type, state) }],
          };
        },
        () => ({}),
      );
    },

    async ReadDataSource(request, call) {
      const diagnostics = new Diagnostics();
      const context = contextFor(call, String(request.type_name));
      return guarded(
        diagnostics,
        context.signal,
        async () => {
          const { definition, type } = lookup(dataSources, request.type_name, "data source");
          const config = decodeObject(type, request.config) ?? completeObject(definition.schema, {});
          const result = await definition.read({ config }, context);
          return { state: encodeDynamic(type, finishState(definition.schema, config, result, diagnostics)) };
        },
        () => ({}),
      );
    },
  };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
