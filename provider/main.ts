// The globalvm provider as the bundler takes it (provider/build/bundle.ts): the module whose
// `provider` export the executable serves.
export { globalvmProvider as provider } from "./globalvm-provider.ts";
