import type { TraceContext } from "../common/trace-context.ts";
import type { TokenScope } from "../schemas/projects.ts";
import type { Catalog, CatalogDb } from "./catalog/db.ts";
import type { OperationEvents } from "./catalog/operations.ts";
import type { ControlPlaneMetrics } from "./metrics.ts";
import type {
  InstanceTokenSigner,
  NetworkTokenSigner,
  SigningKeyring,
  TransferTokenSigner,
} from "./signing.ts";

/** Who is calling: an admin token, a project token, or a regional manager's credential. */
export interface Principal {
  tokenId: string;
  projectId: string | null;
  scopes: readonly (TokenScope | "manager")[];
  /** Set for manager credentials: the datacenter they speak for. */
  datacenter: { name: string; region: string } | null;
}

export interface Services {
  catalog: Catalog;
  db: CatalogDb;
  operationEvents: OperationEvents;
  signingKeys: SigningKeyring;
  transferTokens: TransferTokenSigner;
  instanceTokens: InstanceTokenSigner;
  networkTokens: NetworkTokenSigner;
  now: () => Date;
  /** This control plane's Prometheus registry and what records into it (api/metrics.ts). */
  metrics: ControlPlaneMetrics;
  /**
   * Told after a network's firewall rules changed, to send them to the managers with its guests
   * (set by startControlPlane; an app built without it, as in route tests, sends nothing).
   */
  firewallChanged?: (networkId: string) => Promise<void>;
}

/** `trace`: the request's W3C trace (common/http/trace.ts); operations it creates record its ID. */
export type AppEnv = { Variables: { services: Services; principal: Principal; trace: TraceContext } };
