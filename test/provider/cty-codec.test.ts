import { describe, expect, it } from "vitest";
import { canonicalDecimal, exactDecimalOfDouble } from "../../provider/cty/decimal.ts";
import { decodeJson } from "../../provider/cty/json.ts";
import { CtyCodecError, decodeMsgpack, encodeMsgpack } from "../../provider/cty/msgpack.ts";
import type { CtyType } from "../../provider/cty/types.ts";
import {
  CtyNumber,
  type CtyValue,
  Dynamic,
  Unknown,
  unknown,
  valuesEqual,
} from "../../provider/cty/values.ts";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const fromHex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ""), "hex"));

function roundTrip(type: CtyType, value: CtyValue): CtyValue {
  return decodeMsgpack(type, encodeMsgpack(type, value));
}

describe("decimal text", () => {
  it.each([
    ["0.10", "0.1"],
    ["-0", "0"],
    ["007", "7"],
    ["1e21", "1000000000000000000000"],
    ["1.5E-3", "0.0015"],
    ["-12.300e1", "-123"],
    ["12345678901234567891", "12345678901234567891"],
  ])("canonicalDecimal(%s) = %s", (input, expected) => {
    expect(canonicalDecimal(input)).toBe(expected);
  });

  it("rejects non-numbers", () => {
    expect(() => canonicalDecimal("1.2.3")).toThrow();
    expect(() => canonicalDecimal("")).toThrow();
  });

  it("gives the exact value of a double, not its shortest print", () => {
    expect(exactDecimalOfDouble(0.5)).toBe("0.5");
    expect(exactDecimalOfDouble(2 ** -30)).toBe("0.000000000931322574615478515625");
    expect(exactDecimalOfDouble(0.1)).toBe("0.1000000000000000055511151231257827021181583404541015625");
    expect(exactDecimalOfDouble(-3)).toBe("-3");
  });
});

describe("msgpack: primitive types", () => {
  it("encodes strings, bools and null like cty", () => {
    expect(hex(encodeMsgpack("string", "hi"))).toBe("a26869");
    expect(hex(encodeMsgpack("bool", true))).toBe("c3");
    expect(hex(encodeMsgpack("string", null))).toBe("c0");
    expect(roundTrip("string", "ünïcode ✓".repeat(20))).toBe("ünïcode ✓".repeat(20));
  });

  it("keeps integers beyond 2^53 exact both ways (uint64 cf)", () => {
    const bytes = fromHex("cf 0020000000000001"); // 9007199254740993
    const value = decodeMsgpack("number", bytes) as CtyNumber;
    expect(value.text).toBe("9007199254740993");
    expect(hex(encodeMsgpack("number", value))).toBe("cf0020000000000001");
    expect(hex(encodeMsgpack("number", new CtyNumber(-(2n ** 63n))))).toBe("d38000000000000000");
  });

  it("reads decimal strings and writes non-integers as exact strings", () => {
    const value = decodeMsgpack("number", fromHex("a3 302e31")) as CtyNumber; // "0.1"
    expect(value.text).toBe("0.1");
    expect(hex(encodeMsgpack("number", value))).toBe("a3302e31");
    const huge = "123456789012345678901234567890.000000000000000000001";
    expect((roundTrip("number", new CtyNumber(huge)) as CtyNumber).text).toBe(huge);
  });

  it("reads float64 as its exact value", () => {
    const value = decodeMsgpack("number", fromHex("cb 3fe0000000000000")) as CtyNumber; // 0.5
    expect(value.text).toBe("0.5");
  });

  it("uses compact ints for small numbers", () => {
    expect(hex(encodeMsgpack("number", new CtyNumber(5)))).toBe("05");
    expect(hex(encodeMsgpack("number", new CtyNumber(-1)))).toBe("ff");
    expect(hex(encodeMsgpack("number", new CtyNumber(300)))).toBe("cd012c");
    expect((decodeMsgpack("number", fromHex("d0 80")) as CtyNumber).text).toBe("-128");
  });
});

describe("msgpack: unknown values", () => {
  it("encodes unknown as fixext1 type 0 and decodes it in any position", () => {
    expect(hex(encodeMsgpack("string", unknown))).toBe("d40000");
    const type: CtyType = ["map", "string"];
    const value = decodeMsgpack(type, fromHex("81 a1 6b d4 00 00")) as Record<string, CtyValue>;
    expect(value.k).toBeInstanceOf(Unknown);
  });

  it("decodes a refined unknown (ext 12) and echoes it back byte for byte", () => {
    // name = "child-${x.id}": not null, prefix "child-"
    const bytes = fromHex("c7 0b 0c 82 01 c2 02 a6 6368696c642d");
    const value = decodeMsgpack("string", bytes) as Unknown;
    expect(value).toBeInstanceOf(Unknown);
    expect(value.refinement).toEqual({ nullable: false, stringPrefix: "child-" });
    expect(hex(encodeMsgpack("string", value))).toBe(hex(bytes));
  });

  it("decodes number and length refinements", () => {
    // {3: [1, true], 4: [10, false], 5: 2, 6: 3}
    const payload = fromHex("84 03 92 01 c3 04 92 0a c2 05 02 06 03");
    const bytes = new Uint8Array([0xc7, payload.length, 12, ...payload]);
    const value = decodeMsgpack("number", bytes) as Unknown;
    expect(value.refinement).toEqual({
      numberLowerBound: { value: "1", inclusive: true },
      numberUpperBound: { value: "10", inclusive: false },
      lengthLowerBound: 2,
      lengthUpperBound: 3,
    });
  });

  it("treats any 1-byte extension as unknown, as cty does", () => {
    expect(decodeMsgpack("bool", fromHex("d4 05 00"))).toBeInstanceOf(Unknown);
  });
});

describe("msgpack: collections and structural types", () => {
  const objectType: CtyType = [
    "object",
    {
      name: "string",
      count: "number",
      tags: ["map", "string"],
      zones: ["set", "string"],
      ports: ["list", "number"],
      pair: ["tuple", ["string", "bool"]],
      rule: ["list", ["object", { from: "number", to: "number" }]],
      anything: "dynamic",
    },
  ];

  it("round-trips every kind of value", () => {
    const value: CtyValue = {
      name: "web",
      count: new CtyNumber(3),
      tags: { env: "prod", __proto__: "data, not a prototype" },
      zones: ["a", "b"],
      ports: [new CtyNumber(80), new CtyNumber("443")],
      pair: ["x", false],
      rule: [{ from: new CtyNumber(1), to: unknown }],
      anything: new Dynamic(["list", "string"], ["p", "q"]),
    };
    // __proto__ in an object literal sets the prototype; make it an own key instead.
    Object.defineProperty(value.tags as object, "__proto__", {
      value: "data, not a prototype",
      enumerable: true,
    });
    const decoded = roundTrip(objectType, value) as Record<string, CtyValue>;
    expect(valuesEqual(objectType, decoded, value)).toBe(true);
    expect(Object.keys(decoded.tags as object)).toEqual(["__proto__", "env"]);
    expect(decoded.anything).toBeInstanceOf(Dynamic);
  });

  it("writes every attribute of an object, missing ones as nil", () => {
    const type: CtyType = ["object", { a: "string", b: "string" }];
    expect(hex(encodeMsgpack(type, { a: "x" }))).toBe("82a161a178a162c0");
    expect(decodeMsgpack(type, fromHex("81 a1 61 a1 78"))).toEqual({ a: "x", b: null });
  });

  it("decodes an absent list block (empty array) and null elements", () => {
    const type: CtyType = ["object", { block: ["list", ["object", { x: "string" }]] }];
    expect(decodeMsgpack(type, fromHex("81 a5 626c6f636b 90"))).toEqual({ block: [] });
    expect(roundTrip(["list", "string"], ["a", null])).toEqual(["a", null]);
  });

  it("names the path of a value that does not fit its type", () => {
    const type: CtyType = ["object", { rule: ["list", ["object", { from: "number" }]] }];
    let error: unknown;
    try {
      encodeMsgpack(type, { rule: [{ from: "ten" }] });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(CtyCodecError);
    expect((error as CtyCodecError).path).toEqual(["rule", 0, "from"]);
    expect(() => encodeMsgpack(type, { rule: [], extra: "x" })).toThrow(/unexpected attribute "extra"/);
  });

  it("compares sets regardless of order and numbers by value", () => {
    expect(valuesEqual(["set", "string"], ["a", "b"], ["b", "a"])).toBe(true);
    expect(valuesEqual(["list", "string"], ["a", "b"], ["b", "a"])).toBe(false);
    expect(valuesEqual("number", new CtyNumber("1.50"), new CtyNumber(1.5))).toBe(true);
    expect(valuesEqual("string", unknown, "x")).toBe(false);
  });
});

describe("JSON state", () => {
  it("keeps big and decimal numbers exact and fills attributes the state lacks", () => {
    const type: CtyType = [
      "object",
      { big: "number", small: "number", added: "string", list: ["list", "number"] },
    ];
    const state = decodeJson(
      type,
      '{"big": 123456789012345678901234567890, "small": 0.1, "list": [9007199254740993]}',
    );
    expect(state).toEqual({
      big: new CtyNumber("123456789012345678901234567890"),
      small: new CtyNumber("0.1"),
      added: null,
      list: [new CtyNumber("9007199254740993")],
    });
  });

  it("reads dynamic values in their {value, type} form", () => {
    const state = decodeJson("dynamic", '{"value": ["a"], "type": ["list", "string"]}');
    expect(state).toEqual(new Dynamic(["list", "string"], ["a"]));
  });
});
