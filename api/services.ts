import type { Catalog } from "./catalog/db.ts";
import { OperationEvents } from "./catalog/operations.ts";
import type { Services } from "./env.ts";
import { loadInstanceTokenSigner, loadTransferTokenSigner } from "./signing.ts";

/** What every route reaches through the context, for one catalog. */
export async function createServices(catalog: Catalog): Promise<Services> {
  return {
    catalog,
    db: catalog.db,
    operationEvents: new OperationEvents(),
    transferTokens: await loadTransferTokenSigner(catalog.db),
    instanceTokens: await loadInstanceTokenSigner(catalog.db),
    now: () => new Date(),
  };
}
