// Entry point of the provider executable (bundled by provider/build/bundle.ts): the launcher.
// The provider program it serves is the file beside it (program.ts).
import { launchProvider } from "./launch.ts";
import { PROGRAM_SUFFIX } from "./program.ts";

launchProvider({ launcher: __filename, program: `${__filename}${PROGRAM_SUFFIX}` });
