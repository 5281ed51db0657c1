import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./api/catalog/schema.ts",
  out: "./migrations",
});
