// What a provider, resource or data source is, as globalvm's code defines them.

import type { ObjectValue } from "../cty/values.ts";
import type { AttributePath, Diagnostics } from "./diagnostics.ts";
import type { Logger } from "./logger.ts";
import type { Schema } from "./schema.ts";

export interface CallContext<ProviderData> {
  /** Aborted when Terraform sends StopProvider (Ctrl-C) or drops the call. */
  signal: AbortSignal;
  log: Logger;
  /** What the provider's configure returned (undefined before ConfigureProvider). */
  providerData: ProviderData;
}

/**
 * What Terraform launched the provider with: its environment (GLOBALVM_TOKEN, the plugin
 * handshake's variables) and working directory (relative file paths). A provider daemon
 * serves many launches, so these are never read from the serving process itself.
 */
export interface LaunchEnvironment {
  env: { readonly [name: string]: string | undefined };
  cwd: string;
}

export interface ResourceDefinition<ProviderData = unknown> {
  /** Full resource type name, e.g. "globalvm_image". */
  typeName: string;
  schema: Schema;
  /** Checks beyond types and required-ness (which Terraform checks itself). The config may hold unknowns. */
  validateConfig?(config: ObjectValue, diagnostics: Diagnostics): void | Promise<void>;
  /** Runs after the framework's plan (defaults, unknowns, modifiers); may edit `planned` in place. */
  modifyPlan?(
    request: {
      config: ObjectValue;
      prior: ObjectValue | null;
      planned: ObjectValue;
      requiresReplace: AttributePath[];
      diagnostics: Diagnostics;
    },
    context: CallContext<ProviderData>,
  ): void | Promise<void>;
  /** Returns the new state; attributes it leaves out are taken from the plan. */
  create(
    request: { plan: ObjectValue; config: ObjectValue },
    context: CallContext<ProviderData>,
  ): Promise<ObjectValue>;
  /** Returns the current state, or null when the object no longer exists (Terraform then plans a create). */
  read(request: { state: ObjectValue }, context: CallContext<ProviderData>): Promise<ObjectValue | null>;
  /** Returns the new state; attributes it leaves out are taken from the plan. Optional when every attribute requires replace. */
  update?(
    request: { plan: ObjectValue; prior: ObjectValue; config: ObjectValue },
    context: CallContext<ProviderData>,
  ): Promise<ObjectValue>;
  delete(request: { prior: ObjectValue }, context: CallContext<ProviderData>): Promise<void>;
  /** Turns `terraform import`'s ID into a partial state that read() completes. Default: { id }. */
  importState?(
    request: { id: string },
    context: CallContext<ProviderData>,
  ): ObjectValue | Promise<ObjectValue>;
  /** Converts state stored under an older schema.version (raw JSON text) into the current shape. */
  upgradeState?(request: { version: number; json: string }, context: CallContext<ProviderData>): ObjectValue;
}

export interface DataSourceDefinition<ProviderData = unknown> {
  typeName: string;
  schema: Schema;
  validateConfig?(config: ObjectValue, diagnostics: Diagnostics): void | Promise<void>;
  /** Returns the data source's state; attributes it leaves out are taken from the config. */
  read(request: { config: ObjectValue }, context: CallContext<ProviderData>): Promise<ObjectValue>;
}

export interface ProviderDefinition<ProviderData = unknown> {
  /** The provider's local name, e.g. "globalvm" (resource type names start with it). */
  typeName: string;
  schema: Schema;
  validateConfig?(config: ObjectValue, diagnostics: Diagnostics): void | Promise<void>;
  /** Builds what resources receive as context.providerData (an API client, say). */
  configure(
    request: {
      config: ObjectValue;
      terraformVersion: string;
      diagnostics: Diagnostics;
      launch: LaunchEnvironment;
    },
    context: Omit<CallContext<undefined>, "providerData">,
  ): ProviderData | Promise<ProviderData>;
  resources: ResourceDefinition<ProviderData>[];
  dataSources: DataSourceDefinition<ProviderData>[];
}

/** Identity helpers that keep the ProviderData type flowing into resource definitions. */
export const defineProvider = <P>(definition: ProviderDefinition<P>): ProviderDefinition<P> => definition;
export const defineResource = <P>(definition: ResourceDefinition<P>): ResourceDefinition<P> => definition;
export const defineDataSource = <P>(definition: DataSourceDefinition<P>): DataSourceDefinition<P> =>
  definition;
