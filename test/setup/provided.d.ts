import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    postgresAdminUrl: string;
  }
}
