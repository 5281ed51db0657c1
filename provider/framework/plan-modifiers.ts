// Attribute plan modifiers, as in terraform-plugin-framework: they run after defaults are
// applied and computed attributes are marked unknown, and may change the planned value or
// ask Terraform to replace the resource.

import type { CtyType } from "../cty/types.ts";
import { type CtyValue, isUnknown, valuesEqual } from "../cty/values.ts";
import type { AttributePath } from "./diagnostics.ts";

export interface PlanModifierRequest {
  path: AttributePath;
  type: CtyType;
  config: CtyValue;
  /** The prior value (null when the resource is being created). */
  state: CtyValue;
  plan: CtyValue;
  resourceIsBeingCreated: boolean;
}

export interface PlanModifierResult {
  plan?: CtyValue;
  requiresReplace?: boolean;
}

export interface PlanModifier {
  description: string;
  modify(request: PlanModifierRequest): PlanModifierResult;
}

/** Changing the value destroys the resource and creates a new one. */
export function requiresReplace(): PlanModifier {
  return requiresReplaceIf(() => true, "Changing this value replaces the resource.");
}

export function requiresReplaceIf(
  condition: (request: PlanModifierRequest) => boolean,
  description: string,
): PlanModifier {
  return {
    description,
    modify(request) {
      if (request.resourceIsBeingCreated) return {};
      if (valuesEqual(request.type, request.plan, request.state)) return {};
      return condition(request) ? { requiresReplace: true } : {};
    },
  };
}

/** Keep the prior value of a computed attribute instead of "(known after apply)" on updates. */
export function useStateForUnknown(): PlanModifier {
  return {
    description: "Once set, the value does not change on update.",
    modify(request) {
      if (request.state === null || !isUnknown(request.plan) || isUnknown(request.config)) return {};
      return { plan: request.state };
    },
  };
}
