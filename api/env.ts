import type { TokenScope } from "../schemas/projects.ts";
import type { Catalog, CatalogDb } from "./catalog/db.ts";
import type { OperationEvents } from "./catalog/operations.ts";

/** Who is calling: an admin token (no project) or a project token. */
export interface Principal {
  tokenId: string;
  projectId: string | null;
  scopes: readonly TokenScope[];
}

export interface Services {
  catalog: Catalog;
  db: CatalogDb;
  operationEvents: OperationEvents;
  now: () => Date;
}

export type AppEnv = { Variables: { services: Services; principal: Principal } };
