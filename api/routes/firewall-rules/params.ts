import { z } from "@hono/zod-openapi";
import { idSchema } from "../../../schemas/common.ts";

export const NetworkParams = z.object({ id: idSchema("network") });
export const RuleParams = z.object({ id: idSchema("network"), rule_id: idSchema("firewallRule") });
