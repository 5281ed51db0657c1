import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../env.ts";
import { withLongPolledReads } from "../long-poll.ts";
import * as datacentersCheckCredential from "./datacenters/check-credential.ts";
import * as datacentersGet from "./datacenters/get.ts";
import * as datacentersHeartbeat from "./datacenters/heartbeat.ts";
import * as datacentersList from "./datacenters/list.ts";
import * as datacentersListHosts from "./datacenters/list-hosts.ts";
import * as datacentersRegister from "./datacenters/register.ts";
import * as datacentersRegisterManager from "./datacenters/register-manager.ts";
import * as firewallRulesCreate from "./firewall-rules/create.ts";
import * as firewallRulesDelete from "./firewall-rules/delete.ts";
import * as firewallRulesGet from "./firewall-rules/get.ts";
import * as firewallRulesList from "./firewall-rules/list.ts";
import * as firewallRulesUpdate from "./firewall-rules/update.ts";
import * as imageFamiliesGet from "./image-families/get.ts";
import * as imagesCreate from "./images/create.ts";
import * as imagesCreateUpload from "./images/create-upload.ts";
import * as imagesDelete from "./images/delete.ts";
import * as imagesDeleteVersion from "./images/delete-version.ts";
import * as imagesGet from "./images/get.ts";
import * as imagesGetVersion from "./images/get-version.ts";
import * as imagesList from "./images/list.ts";
import * as imagesListVersions from "./images/list-versions.ts";
import * as imagesReplicate from "./images/replicate.ts";
import * as imagesUpdate from "./images/update.ts";
import * as imagesUpdateVersion from "./images/update-version.ts";
import * as instancesGet from "./instances/get.ts";
import * as instancesList from "./instances/list.ts";
import * as instancesListProject from "./instances/list-project.ts";
import * as instancesReport from "./instances/report.ts";
import * as instancesResolveName from "./instances/resolve-name.ts";
import * as managerCredentialsCreate from "./managers/create-credential.ts";
import * as networksCreate from "./networks/create.ts";
import * as networksDelete from "./networks/delete.ts";
import * as networksGet from "./networks/get.ts";
import * as networksList from "./networks/list.ts";
import * as networksUpdate from "./networks/update.ts";
import * as operationsCancel from "./operations/cancel.ts";
import * as operationsGet from "./operations/get.ts";
import * as operationsList from "./operations/list.ts";
import * as placementsExplain from "./placements/explain.ts";
import * as projectsCreate from "./projects/create.ts";
import * as projectsGet from "./projects/get.ts";
import * as projectsList from "./projects/list.ts";
import * as projectsUpdate from "./projects/update.ts";
import * as regionsCreate from "./regions/create.ts";
import * as regionsGet from "./regions/get.ts";
import * as regionsList from "./regions/list.ts";
import * as replicasReport from "./replicas/report.ts";
import * as replicasSources from "./replicas/sources.ts";
import * as signingKeysRotate from "./signing-keys/rotate.ts";
import * as tokensCreate from "./tokens/create.ts";
import * as tokensDelete from "./tokens/delete.ts";
import * as tokensList from "./tokens/list.ts";
import * as vmGroupsCreate from "./vm-groups/create.ts";
import * as vmGroupsDelete from "./vm-groups/delete.ts";
import * as vmGroupsGet from "./vm-groups/get.ts";
import * as vmGroupsList from "./vm-groups/list.ts";
import * as vmGroupsUpdate from "./vm-groups/update.ts";

const ROUTES = [
  projectsCreate,
  projectsList,
  projectsGet,
  projectsUpdate,
  tokensCreate,
  tokensList,
  tokensDelete,
  regionsCreate,
  regionsList,
  regionsGet,
  datacentersRegister,
  datacentersList,
  datacentersGet,
  datacentersListHosts,
  datacentersHeartbeat,
  networksCreate,
  networksList,
  networksGet,
  networksUpdate,
  networksDelete,
  firewallRulesCreate,
  firewallRulesList,
  firewallRulesGet,
  firewallRulesUpdate,
  firewallRulesDelete,
  imagesCreate,
  imagesList,
  imagesGet,
  imagesListVersions,
  imagesGetVersion,
  imageFamiliesGet,
  imagesUpdateVersion,
  imagesDeleteVersion,
  imagesUpdate,
  imagesDelete,
  vmGroupsCreate,
  vmGroupsList,
  vmGroupsGet,
  vmGroupsUpdate,
  vmGroupsDelete,
  instancesList,
  instancesListProject,
  instancesGet,
  operationsList,
  operationsGet,
  operationsCancel,
  managerCredentialsCreate,
  signingKeysRotate,
  datacentersRegisterManager,
  datacentersCheckCredential,
  imagesCreateUpload,
  replicasReport,
  replicasSources,
  imagesReplicate,
  instancesReport,
  instancesResolveName,
  placementsExplain,
];

/** Every GET is registered long-polled: ETag, If-None-Match and `Prefer: wait` (../long-poll.ts). */
export function registerRoutes(app: OpenAPIHono<AppEnv>) {
  const routes = withLongPolledReads(app);
  for (const route of ROUTES) route.register(routes);
}
