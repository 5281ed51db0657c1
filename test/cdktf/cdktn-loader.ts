// `node --import ./test/cdktf/cdktn-loader.ts app.ts` runs a CDKTF app on cdktn, the community
// continuation of cdktf: every import of "cdktf" (the app's and the generated bindings') is
// resolved to "cdktn" instead, so the very same binding files run on cdktn's runtime.
import { registerHooks } from "node:module";

registerHooks({
  resolve(specifier, context, nextResolve) {
    return nextResolve(specifier === "cdktf" ? "cdktn" : specifier, context);
  },
});
