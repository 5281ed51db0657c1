import { describe, expect, it } from "vitest";
import {
  attributePathToProto,
  DiagnosticError,
  Diagnostics,
  diagnosticFromError,
  diagnosticToProto,
} from "../../provider/framework/diagnostics.ts";
import { formatLogLine } from "../../provider/framework/logger.ts";

describe("diagnostics", () => {
  it("turns attribute paths into protocol steps", () => {
    expect(attributePathToProto(["placement", 0, "regions", { key: "eu" }])).toEqual({
      steps: [
        { attribute_name: "placement" },
        { element_key_int: 0 },
        { attribute_name: "regions" },
        { element_key_string: "eu" },
      ],
    });
  });

  it("serialises severity, summary, detail and path", () => {
    const diagnostics = new Diagnostics()
      .error("Bad size", "size must be ≥ 1", ["size"])
      .warning("Deprecated");
    expect(diagnostics.hasErrors).toBe(true);
    expect(diagnostics.items.map(diagnosticToProto)).toEqual([
      {
        severity: "ERROR",
        summary: "Bad size",
        detail: "size must be ≥ 1",
        attribute: { steps: [{ attribute_name: "size" }] },
      },
      { severity: "WARNING", summary: "Deprecated", detail: "" },
    ]);
  });

  it("keeps the path of a thrown DiagnosticError and wraps other errors", () => {
    expect(
      diagnosticFromError(new DiagnosticError("Image not found", { path: ["image"], detail: "img-1" })),
    ).toEqual({
      severity: "error",
      summary: "Image not found",
      detail: "img-1",
      path: ["image"],
    });
    expect(diagnosticFromError(new Error("boom"), "Create failed")).toEqual({
      severity: "error",
      summary: "Create failed",
      detail: "boom",
    });
  });
});

describe("hclog lines", () => {
  it("carry level, message, module, a microsecond timestamp and fields", () => {
    const line = formatLogLine(
      "info",
      "provider.terraform-provider-globalvm",
      "transfer",
      { bytes: 10 },
      new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)),
    );
    expect(JSON.parse(line)).toEqual({
      "@level": "info",
      "@message": "transfer",
      "@module": "provider.terraform-provider-globalvm",
      "@timestamp": "2026-01-02T03:04:05.678000Z",
      bytes: 10,
    });
  });
});
