// Entry point of terraform-provider-globalvm (bundled by provider/build/bundle.ts).
import { globalvmProvider } from "./globalvm-provider.ts";
import { serveProvider } from "./server/serve.ts";

serveProvider(globalvmProvider);
