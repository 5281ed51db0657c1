// Entry point of terraform-provider-globalvm (bundled by provider/build/bundle.ts). The
// provider's code is imported only by the process that serves it (see server/launch.ts).
import { launchProvider } from "./server/launch.ts";

launchProvider(async () => (await import("./globalvm-provider.ts")).globalvmProvider);
