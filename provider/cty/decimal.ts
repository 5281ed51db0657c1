// Exact decimal text for cty numbers. cty numbers are arbitrary-precision, so globalvm
// never routes them through a float: they live as canonical decimal strings.

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** Canonical form: no exponent, no leading zeros, no trailing fractional zeros, "0" for zero. */
export function canonicalDecimal(text: string): string {
  const match = DECIMAL.exec(text.trim());
  if (!match || (match[2] === "" && (match[3] ?? "") === ""))
    throw new Error(`not a decimal number: "${text}"`);
  const negative = match[1] === "-";
  const fraction = match[3] ?? "";
  let digits = (match[2] ?? "") + fraction;
  let exponent = Number(match[4] ?? "0") - fraction.length;
  digits = digits.replace(/^0+/, "");
  if (digits === "") return "0";
  const trailingZeros = /0*$/.exec(digits)?.[0].length ?? 0;
  digits = digits.slice(0, digits.length - trailingZeros);
  exponent += trailingZeros;
  let body: string;
  if (exponent >= 0) body = digits + "0".repeat(exponent);
  else if (-exponent < digits.length) body = `${digits.slice(0, exponent)}.${digits.slice(exponent)}`;
  else body = `0.${"0".repeat(-exponent - digits.length)}${digits}`;
  return negative ? `-${body}` : body;
}

/** The exact decimal value of a float64 (not the shortest round-trip text JS prints). */
export function exactDecimalOfDouble(value: number): string {
  if (!Number.isFinite(value)) throw new Error(`cty numbers cannot be ${value}`);
  if (Number.isInteger(value)) return BigInt(value).toString();
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, value);
  const bits = view.getBigUint64(0);
  const negative = bits >> 63n === 1n;
  const biasedExponent = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & 0xfffffffffffffn;
  let exponent: number;
  if (biasedExponent === 0) exponent = -1074;
  else {
    mantissa |= 1n << 52n;
    exponent = biasedExponent - 1075;
  }
  // value = mantissa * 2^exponent with exponent < 0 = mantissa * 5^-exponent / 10^-exponent
  const scaled = mantissa * 5n ** BigInt(-exponent);
  return canonicalDecimal(`${negative ? "-" : ""}${scaled}e${exponent}`);
}

export function isIntegerText(canonical: string): boolean {
  return !canonical.includes(".");
}
