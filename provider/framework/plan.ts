// PlanResourceChange as a plain function of (schema, prior state, proposed new state,
// config). Terraform has already merged config and prior state into `proposed`; what the
// provider adds is: defaults, "(known after apply)" for computed attributes when the
// resource changes, plan modifiers (use-state-for-unknown, requires-replace).

import { defineEntry } from "../cty/codec.ts";
import type { CtyType } from "../cty/types.ts";
import {
  CtyNumber,
  type CtyValue,
  Dynamic,
  isPlainObject,
  type ObjectValue,
  Unknown,
  unknown,
  valuesEqual,
} from "../cty/values.ts";
import type { AttributePath } from "./diagnostics.ts";
import { type Block, blockType, type NestedBlock, nestedBlockType } from "./schema.ts";

export interface PlanInput {
  schema: Block;
  prior: ObjectValue | null;
  proposed: ObjectValue | null;
  config: ObjectValue | null;
}

export interface PlanOutput {
  planned: ObjectValue | null;
  requiresReplace: AttributePath[];
}

export function cloneValue<T extends CtyValue>(value: T): T {
  if (value === null || typeof value !== "object") return value;
  if (value instanceof Unknown || value instanceof CtyNumber || value instanceof Dynamic) return value;
  if (Array.isArray(value)) return value.map(cloneValue) as T;
  const copy: { [key: string]: CtyValue } = {};
  for (const key of Object.keys(value)) defineEntry(copy, key, cloneValue(value[key] as CtyValue));
  return copy as T;
}

type ObjectVisitor = (
  block: Block,
  config: ObjectValue | null,
  prior: ObjectValue | null,
  planned: ObjectValue,
  path: AttributePath,
) => void;

const asObject = (value: CtyValue | undefined): ObjectValue | null => (isPlainObject(value) ? value : null);

/** Visits the planned object and every nested block object in it, with its config and prior counterparts. */
export function visitBlockObjects(
  block: Block,
  config: ObjectValue | null,
  prior: ObjectValue | null,
  planned: ObjectValue,
  path: AttributePath,
  visit: ObjectVisitor,
): void {
  visit(block, config, prior, planned, path);
  for (const [name, nested] of Object.entries(block.blocks ?? {})) {
    const plannedValue = planned[name];
    const configValue = config?.[name] ?? null;
    const priorValue = prior?.[name] ?? null;
    visitNested(nested, configValue, priorValue, plannedValue ?? null, [...path, name], visit);
  }
}

function visitNested(
  nested: NestedBlock,
  config: CtyValue,
  prior: CtyValue,
  planned: CtyValue,
  path: AttributePath,
  visit: ObjectVisitor,
) {
  if (planned === null || planned instanceof Unknown) return;
  switch (nested.nesting) {
    case "single":
    case "group":
      if (isPlainObject(planned))
        visitBlockObjects(nested, asObject(config), asObject(prior), planned, path, visit);
      return;
    case "list":
    case "set":
      if (!Array.isArray(planned)) return;
      planned.forEach((element, index) => {
        if (!isPlainObject(element)) return;
        const configElement = Array.isArray(config) ? asObject(config[index]) : null;
        // Set elements have no identity across plans, so there is no prior element to consult.
        const priorElement =
          nested.nesting === "list" && Array.isArray(prior) ? asObject(prior[index]) : null;
        visitBlockObjects(nested, configElement, priorElement, element, [...path, index], visit);
      });
      return;
    case "map":
      if (!isPlainObject(planned)) return;
      for (const [key, element] of Object.entries(planned)) {
        if (!isPlainObject(element)) continue;
        const configElement = isPlainObject(config) ? asObject(config[key]) : null;
        const priorElement = isPlainObject(prior) ? asObject(prior[key]) : null;
        visitBlockObjects(nested, configElement, priorElement, element, [...path, { key }], visit);
      }
      return;
  }
}

export function planResourceChange(input: PlanInput): PlanOutput {
  const { schema, prior, proposed, config } = input;
  if (proposed === null) return { planned: null, requiresReplace: [] };
  const planned = cloneValue(proposed);
  const resourceIsBeingCreated = prior === null;

  visitBlockObjects(schema, config, prior, planned, [], (block, configObject, _prior, plannedObject) => {
    for (const [name, attribute] of Object.entries(block.attributes)) {
      if (attribute.default !== undefined && (configObject?.[name] ?? null) === null) {
        plannedObject[name] = cloneValue(attribute.default);
      }
    }
  });

  if (resourceIsBeingCreated || !valuesEqual(blockType(schema), planned, prior)) {
    visitBlockObjects(schema, config, prior, planned, [], (block, configObject, _prior, plannedObject) => {
      for (const [name, attribute] of Object.entries(block.attributes)) {
        if (!attribute.computed || attribute.default !== undefined) continue;
        if ((configObject?.[name] ?? null) === null) plannedObject[name] = unknown;
      }
    });
  }

  const requiresReplace: AttributePath[] = [];
  const runModifiers = (
    modifiers: NestedBlock["planModifiers"],
    type: CtyType,
    name: string,
    configObject: ObjectValue | null,
    priorObject: ObjectValue | null,
    plannedObject: ObjectValue,
    path: AttributePath,
  ) => {
    for (const modifier of modifiers ?? []) {
      const result = modifier.modify({
        path,
        type,
        config: configObject?.[name] ?? null,
        state: priorObject?.[name] ?? null,
        plan: plannedObject[name] ?? null,
        resourceIsBeingCreated,
      });
      if (result.plan !== undefined) plannedObject[name] = result.plan;
      if (result.requiresReplace && !requiresReplace.some((known) => samePath(known, path))) {
        requiresReplace.push(path);
      }
    }
  };
  visitBlockObjects(
    schema,
    config,
    prior,
    planned,
    [],
    (block, configObject, priorObject, plannedObject, path) => {
      for (const [name, attribute] of Object.entries(block.attributes)) {
        runModifiers(
          attribute.planModifiers,
          attribute.type,
          name,
          configObject,
          priorObject,
          plannedObject,
          [...path, name],
        );
      }
      for (const [name, nested] of Object.entries(block.blocks ?? {})) {
        runModifiers(
          nested.planModifiers,
          nestedBlockType(nested),
          name,
          configObject,
          priorObject,
          plannedObject,
          [...path, name],
        );
      }
    },
  );

  return { planned, requiresReplace };
}

function samePath(a: AttributePath, b: AttributePath): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Null for every attribute and block of the schema not present in `partial` (nested blocks: empty). */
export function completeObject(schema: Block, partial: ObjectValue): ObjectValue {
  const complete: ObjectValue = {};
  for (const name of Object.keys(schema.attributes)) complete[name] = partial[name] ?? null;
  for (const [name, nested] of Object.entries(schema.blocks ?? {})) {
    const value = partial[name];
    if (value !== undefined) complete[name] = value;
    else if (nested.nesting === "list" || nested.nesting === "set") complete[name] = [];
    else if (nested.nesting === "map") complete[name] = {};
    // A group block is never null: absent, it is an object of nulls.
    else complete[name] = nested.nesting === "group" ? completeObject(nested, {}) : null;
  }
  return complete;
}

/** The first path at which `value` is still unknown, for the "unknown after apply" diagnostic. */
export function findUnknown(value: CtyValue, path: AttributePath = []): AttributePath | undefined {
  if (value instanceof Unknown) return path;
  if (value instanceof Dynamic) return findUnknown(value.value, path);
  if (Array.isArray(value)) {
    for (const [index, element] of value.entries()) {
      const found = findUnknown(element, [...path, index]);
      if (found) return found;
    }
  } else if (isPlainObject(value)) {
    for (const [key, element] of Object.entries(value)) {
      const found = findUnknown(element, [...path, key]);
      if (found) return found;
    }
  }
  return undefined;
}
