import { describe, expect, it } from "vitest";
import { ordinalOfInstanceLabel } from "../../api/catalog/internal-names.ts";
import {
  canonicalName,
  internalName,
  isWithinZone,
  parseInternalName,
  projectZone,
} from "../../schemas/internal-names.ts";

describe("internal names", () => {
  it("names an instance and a group, and reads both back", () => {
    const instance = { project: "acme", region: "us-east", group: "web", instance: "web-0" };
    expect(internalName(instance)).toBe("web-0.web.us-east.acme.globalvm.internal");
    expect(parseInternalName("web-0.web.us-east.acme.globalvm.internal")).toEqual(instance);
    expect(internalName({ project: "acme", region: "us-east", group: "web" })).toBe(
      "web.us-east.acme.globalvm.internal",
    );
    expect(parseInternalName("web.us-east.acme.globalvm.internal")).toEqual({
      project: "acme",
      region: "us-east",
      group: "web",
    });
  });

  it("reads names as DNS compares them: any case, with or without the root's dot", () => {
    expect(parseInternalName("WEB-0.Web.US-EAST.acme.GlobalVM.Internal.")).toEqual({
      project: "acme",
      region: "us-east",
      group: "web",
      instance: "web-0",
    });
    expect(canonicalName("Web.US-East.acme.globalvm.internal.")).toBe("web.us-east.acme.globalvm.internal");
  });

  it("refuses what is not an internal name", () => {
    for (const name of [
      "globalvm.internal",
      "acme.globalvm.internal",
      "us-east.acme.globalvm.internal",
      "x.web-0.web.us-east.acme.globalvm.internal",
      "web.us-east.acme.globalvm.internal.example.com",
      "web.us-east.acme.example.com",
      "web..acme.globalvm.internal",
      "-web.us-east.acme.globalvm.internal",
      "web_0.web.us-east.acme.globalvm.internal",
      `${"a".repeat(64)}.us-east.acme.globalvm.internal`,
      "",
    ])
      expect(parseInternalName(name), name).toBeUndefined();
  });

  it("tells the names of a project's zone", () => {
    expect(projectZone("acme")).toBe("acme.globalvm.internal");
    expect(isWithinZone("web.us-east.ACME.globalvm.internal.", "acme.globalvm.internal")).toBe(true);
    expect(isWithinZone("acme.globalvm.internal", "acme.globalvm.internal")).toBe(true);
    expect(isWithinZone("web.us-east.xacme.globalvm.internal", "acme.globalvm.internal")).toBe(false);
  });

  it("reads an instance label as its group's name and an ordinal written as the catalog writes it", () => {
    expect(ordinalOfInstanceLabel("web", "web-0")).toBe(0);
    expect(ordinalOfInstanceLabel("web", "web-12")).toBe(12);
    expect(ordinalOfInstanceLabel("my-web", "my-web-3")).toBe(3);
    for (const label of ["web-x", "web-01", "web-", "web", "db-0", "web-0x", "web--1", "web-1234567890"])
      expect(ordinalOfInstanceLabel("web", label), label).toBeUndefined();
  });
});
