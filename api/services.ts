import type { Catalog } from "./catalog/db.ts";
import { OperationEvents } from "./catalog/operations.ts";
import type { Services } from "./env.ts";
import { ControlPlaneMetrics } from "./metrics.ts";
import { instanceTokenSigner, networkTokenSigner, SigningKeyring, transferTokenSigner } from "./signing.ts";
import type { KeyEncryptionKey } from "./signing-key-wrap.ts";

/** What every route reaches through the context, for one catalog; `kek` opens its signing keys. */
export async function createServices(catalog: Catalog, kek: KeyEncryptionKey): Promise<Services> {
  const now = () => new Date();
  const signingKeys = await SigningKeyring.open(catalog.db, kek, now);
  const operationEvents = new OperationEvents();
  if (catalog.feed) await operationEvents.connect(catalog.feed);
  return {
    catalog,
    db: catalog.db,
    operationEvents,
    signingKeys,
    transferTokens: transferTokenSigner(signingKeys),
    instanceTokens: instanceTokenSigner(signingKeys),
    networkTokens: networkTokenSigner(signingKeys),
    now,
    metrics: new ControlPlaneMetrics(catalog.db, now),
  };
}
