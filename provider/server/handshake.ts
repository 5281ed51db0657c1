// go-plugin's side of the launch: Terraform starts the provider with a magic cookie and
// its client certificate in the environment and reads one line from stdout:
//   CORE-PROTOCOL-VERSION | APP-PROTOCOL-VERSION | NETWORK | ADDRESS | PROTOCOL | SERVER-CERT

export const MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE";
export const MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
const CORE_PROTOCOL_VERSION = 1;
export const APP_PROTOCOL_VERSION = 6;

export interface PluginEnvironment {
  clientCertPem: string;
}

export type HandshakeCheck = { ok: true; environment: PluginEnvironment } | { ok: false; message: string };

export function checkPluginEnvironment(env: NodeJS.ProcessEnv): HandshakeCheck {
  if (env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    return {
      ok: false,
      message:
        "This binary is a plugin. These are not meant to be executed directly.\n" +
        "Please execute the program that consumes these plugins, which will\n" +
        "load any plugins automatically\n",
    };
  }
  // Terraform builds this list from a Go map, so the order varies ("5,6" or "6,5").
  const versions = new Set((env.PLUGIN_PROTOCOL_VERSIONS ?? "").split(",").map((version) => version.trim()));
  if (!versions.has(String(APP_PROTOCOL_VERSION))) {
    return {
      ok: false,
      message: `this provider speaks plugin protocol ${APP_PROTOCOL_VERSION}, Terraform offered "${env.PLUGIN_PROTOCOL_VERSIONS ?? ""}" (Terraform ≥ 1.0 is required)\n`,
    };
  }
  const clientCertPem = env.PLUGIN_CLIENT_CERT;
  if (!clientCertPem)
    return { ok: false, message: "PLUGIN_CLIENT_CERT is not set: Terraform always sets it (AutoMTLS)\n" };
  return { ok: true, environment: { clientCertPem } };
}

/** Go decodes the certificate with base64.RawStdEncoding: standard alphabet, no padding. */
export function handshakeLine(address: { host: string; port: number }, serverCertDer: Uint8Array): string {
  const cert = Buffer.from(serverCertDer).toString("base64").replace(/=+$/, "");
  return `${CORE_PROTOCOL_VERSION}|${APP_PROTOCOL_VERSION}|tcp|${address.host}:${address.port}|grpc|${cert}\n`;
}
