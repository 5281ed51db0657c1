// globalvm with CDKTF: an image uploaded to one region and VM groups in two others.
//   - `web` is placed by a placement policy (regions it may use, conditions on capacity);
//   - `worker` takes metadata from web: WEB_INSTANCE is web's first instance id, which the
//     control plane fills in as soon as that instance exists: both groups boot in parallel.
//     (attribute may also be address, name or datacenter.)
//   - a network of its own, `backend`, admits HTTP from worker's instances only (a network
//     other than `default` denies what no rule allows).
// The control plane moves the image to each group's region (only the chunks it lacks).
//
//   npx node examples/cdktf/main.ts        synthesizes cdktf.out/stacks/globalvm/cdk.tf.json
//   cd examples/cdktf/cdktf.out/stacks/globalvm && terraform init && terraform apply
//
// GLOBALVM_ENDPOINT and GLOBALVM_TOKEN configure the provider when terraform runs (the
// token is never written into the synthesized JSON). GLOBALVM_REGIONS (default
// eu-west,us-east,ap-south) names the image's region, then web's, then worker's.

import { join, resolve } from "node:path";
import { App, LocalBackend, TerraformOutput, TerraformStack, TerraformVariable } from "cdktf";
import type { Construct } from "constructs";
import { FirewallRule, GlobalvmProvider, Image, Network, VmGroup } from "globalvm/cdktf";

export interface ExampleRegions {
  image: string;
  web: string;
  worker: string;
}

/** "eu-west,us-east,ap-south" → the image's, web's and worker's regions. */
export function parseRegions(text: string): ExampleRegions {
  const names = text.split(",").map((name) => name.trim());
  const [image, web, worker] = names;
  if (names.length !== 3 || !image || !web || !worker) {
    throw new Error(
      `GLOBALVM_REGIONS must name three regions, comma-separated (image, web, worker): got ${JSON.stringify(text)}`,
    );
  }
  return { image, web, worker };
}

export class GlobalvmExampleStack extends TerraformStack {
  constructor(scope: Construct, id: string, regions: ExampleRegions) {
    super(scope, id);

    // Terraform runs in <outdir>/stacks/globalvm: the state sits beside the outdir, which a
    // new synth may replace, and not in whatever directory the synth ran from.
    new LocalBackend(this, { path: "../../../terraform.globalvm.tfstate" });

    // endpoint and token default to GLOBALVM_ENDPOINT and GLOBALVM_TOKEN.
    new GlobalvmProvider(this, "globalvm", {});

    const imageFile = new TerraformVariable(this, "image_file", {
      type: "string",
      description: "Local qcow2 disk image to upload (the guest image `npm run guest-image` builds).",
      default: resolve(import.meta.dirname, "../../.globalvm/images/guest.qcow2"),
    });

    const image = new Image(this, "guest", {
      name: "guest",
      source: imageFile.stringValue,
      format: "qcow2",
      originRegion: regions.image,
    });

    const web = new VmGroup(this, "web", {
      name: "web",
      image: image.id,
      size: 1,
      machine: { vcpus: 1, memoryMb: 192 },
      placement: {
        regions: [regions.web],
        strategy: "least-loaded",
        conditions: { minFreeVcpus: 1, minFreeMemoryMb: 192 },
      },
      metadata: { ROLE: "web" },
      timeouts: { create: "10m", delete: "5m" },
    });

    const worker = new VmGroup(this, "worker", {
      name: "worker",
      image: image.id,
      region: regions.worker,
      size: 1,
      machine: { vcpus: 1, memoryMb: 192 },
      metadata: { ROLE: "worker" },
      // Terraform object attributes need every field: vm_group (an id), instance, attribute.
      metadataFrom: { WEB_INSTANCE: { vmGroup: web.id, instance: 0, attribute: "id" } },
      timeouts: { create: "10m", delete: "5m" },
    });

    const backend = new Network(this, "backend-network", { name: "backend", cidr: "10.30.0.0/16" });
    new FirewallRule(this, "http-from-worker", {
      network: backend.id,
      name: "http-from-worker",
      action: "allow",
      protocol: "tcp",
      ports: ["80"],
      sourceVmGroup: worker.name,
    });

    new TerraformOutput(this, "web_addresses", { value: `\${${web.fqn}.instances[*].address}` });
    new TerraformOutput(this, "worker_addresses", { value: `\${${worker.fqn}.instances[*].address}` });
    new TerraformOutput(this, "web_datacenter", { value: web.datacenter });
    new TerraformOutput(this, "worker_datacenter", { value: worker.datacenter });
  }
}

/** Synthesizes the stack into `outdir`; returns the path of its cdk.tf.json. */
export function synthesize(outdir: string, regions: ExampleRegions): string {
  const app = new App({ outdir });
  new GlobalvmExampleStack(app, "globalvm", regions);
  app.synth();
  return join(outdir, "stacks", "globalvm", "cdk.tf.json");
}

if (import.meta.main) {
  const outdir = process.env.CDKTF_OUTDIR ?? join(import.meta.dirname, "cdktf.out");
  const file = synthesize(outdir, parseRegions(process.env.GLOBALVM_REGIONS ?? "eu-west,us-east,ap-south"));
  console.log(`synthesized ${file}`);
}
