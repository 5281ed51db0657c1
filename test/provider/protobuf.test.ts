import { readFileSync } from "node:fs";
import { loadSync } from "@grpc/proto-loader";
import { describe, expect, it } from "vitest";
import {
  buildDescriptor,
  DESCRIPTOR_FILE,
  renderDescriptorModule,
} from "../../provider/build/generate-descriptor.ts";
import { descriptor } from "../../provider/protocol/descriptor.gen.ts";
import { parseProto } from "../../provider/protocol/proto-parser.ts";
import { ProtobufCodec } from "../../provider/protocol/protobuf.ts";

const codec = new ProtobufCodec(descriptor);
const protoFile = new URL("../../provider/protocol/tfplugin6.proto", import.meta.url).pathname;

// An independent implementation (protobufjs, via proto-loader) reading the same .proto.
const reference = loadSync(protoFile, {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: false,
});
type Serializers = {
  requestSerialize(value: object): Buffer;
  requestDeserialize(bytes: Buffer): object;
  responseSerialize(value: object): Buffer;
  responseDeserialize(bytes: Buffer): object;
};
const rpc = (name: string) =>
  (reference["tfplugin6.Provider"] as unknown as Record<string, Serializers>)[name] as Serializers;

describe("generated descriptor", () => {
  it("is up to date with the .proto files (run provider/build/generate-descriptor.ts)", () => {
    expect(readFileSync(DESCRIPTOR_FILE, "utf8")).toBe(renderDescriptorModule(buildDescriptor()));
  });

  it("resolves nested names from the innermost scope outwards", () => {
    const parsed = parseProto(`
      syntax = "proto3"; package p;
      message A { message B { int64 n = 1; } B b = 1; repeated C c = 2; map<string, A.B> m = 3; oneof o { string s = 4; } }
      message C { optional bool f = 1; }
      service S { rpc Call(A) returns (C); }`);
    const a = parsed.messages["p.A"]?.fields ?? [];
    expect(a.map((field) => [field.name, field.type, field.repeated, field.explicitPresence])).toEqual([
      ["b", { kind: "message", typeName: "p.A.B" }, false, false],
      ["c", { kind: "message", typeName: "p.C" }, true, false],
      ["m", { kind: "scalar", scalar: "string" }, true, false],
      ["s", { kind: "scalar", scalar: "string" }, false, true],
    ]);
    expect(a[2]?.mapValue).toEqual({ kind: "message", typeName: "p.A.B" });
    expect(parsed.services["p.S"]).toEqual([{ name: "Call", requestType: "p.A", responseType: "p.C" }]);
  });
});

describe("wire codec against protobufjs", () => {
  const schemaResponse = {
    provider: {
      version: 1,
      block: {
        version: 1,
        attributes: [{ name: "endpoint", type: Buffer.from('"string"'), optional: true }],
      },
    },
    resource_schemas: {
      globalvm_image: {
        version: 2,
        block: {
          version: 2,
          description: "an image",
          attributes: [
            { name: "id", type: Buffer.from('"string"'), computed: true, description_kind: "MARKDOWN" },
            { name: "labels", type: Buffer.from('["map","string"]'), optional: true, sensitive: true },
          ],
          block_types: [
            {
              type_name: "replica",
              nesting: "SET",
              min_items: 1,
              max_items: 3,
              block: { attributes: [{ name: "region", type: Buffer.from('"string"'), required: true }] },
            },
          ],
        },
      },
    },
    diagnostics: [
      {
        severity: "ERROR",
        summary: "bad",
        detail: "worse",
        attribute: {
          steps: [{ attribute_name: "rule" }, { element_key_int: 2 }, { element_key_string: "k" }],
        },
      },
    ],
    server_capabilities: { plan_destroy: true, get_provider_schema_optional: true },
  };

  it("encodes what protobufjs decodes to the same message", () => {
    const ours = codec.encode("tfplugin6.GetProviderSchema.Response", schemaResponse);
    const decoded = rpc("GetProviderSchema").responseDeserialize(Buffer.from(ours));
    expect(JSON.parse(JSON.stringify(decoded))).toEqual(JSON.parse(JSON.stringify(schemaResponse)));
  });

  it("decodes what protobufjs encodes", () => {
    const request = {
      type_name: "globalvm_vm_group",
      prior_state: { msgpack: Buffer.from([0xc0]) },
      proposed_new_state: { msgpack: Buffer.from([0x81, 0xa1, 0x61, 0xd4, 0, 0]) },
      config: { json: Buffer.from("{}") },
      prior_private: Buffer.from("p"),
      client_capabilities: { deferral_allowed: true, write_only_attributes_allowed: true },
    };
    const bytes = rpc("PlanResourceChange").requestSerialize(request);
    const decoded = codec.decode("tfplugin6.PlanResourceChange.Request", bytes);
    expect(Buffer.from(decoded.prior_private as Uint8Array).toString()).toBe("p");
    expect(decoded).toMatchObject({
      type_name: "globalvm_vm_group",
      client_capabilities: { deferral_allowed: true, write_only_attributes_allowed: true },
    });
    expect(Buffer.from((decoded.proposed_new_state as { msgpack: Uint8Array }).msgpack).toString("hex")).toBe(
      "81a161d40000",
    );
    expect(decoded.provider_meta).toBeUndefined();
  });

  it("round-trips raw state with a flatmap and skips fields it does not know", () => {
    const bytes = rpc("UpgradeResourceState").requestSerialize({
      type_name: "t",
      version: 3,
      raw_state: { json: Buffer.from('{"a":1}'), flatmap: { "a.#": "1" } },
    });
    const withUnknownField = Buffer.concat([bytes, Buffer.from([0xf8, 0x06, 0x01])]); // field 111, varint 1
    const decoded = codec.decode("tfplugin6.UpgradeResourceState.Request", withUnknownField);
    expect(decoded.version).toBe(3);
    expect((decoded.raw_state as { flatmap: object }).flatmap).toEqual({ "a.#": "1" });
  });

  it("omits proto3 defaults but keeps oneof members that hold them", () => {
    expect(codec.encode("tfplugin6.ServerCapabilities", { plan_destroy: false })).toEqual(new Uint8Array());
    expect(
      Buffer.from(codec.encode("tfplugin6.AttributePath.Step", { element_key_int: 0 })).toString("hex"),
    ).toBe("1800");
  });
});
