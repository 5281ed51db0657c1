import type { Catalog } from "./catalog/db.ts";
import { OperationEvents } from "./catalog/operations.ts";
import type { Services } from "./env.ts";
import { loadInstanceTokenSigner, loadTransferTokenSigner } from "./signing.ts";

/** What every route reaches through the context, for one catalog. */
export async function createServices(catalog: Catalog): Promise<Services> {
  const operationEvents = new OperationEvents();
  if (catalog.feed) await operationEvents.connect(catalog.feed);
  return {
    catalog,
    db: catalog.db,
    operationEvents,
    transferTokens: await loadTransferTokenSigner(catalog.db),
    instanceTokens: await loadInstanceTokenSigner(catalog.db),
    now: () => new Date(),
  };
}
