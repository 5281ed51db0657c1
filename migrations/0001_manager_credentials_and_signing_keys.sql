CREATE TABLE "signing_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"algorithm" text NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"private_jwk" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "api_tokens" DROP CONSTRAINT "api_tokens_scopes_valid";--> statement-breakpoint
ALTER TABLE "api_tokens" ADD COLUMN "region" text;--> statement-breakpoint
ALTER TABLE "api_tokens" ADD COLUMN "datacenter" text;--> statement-breakpoint
ALTER TABLE "image_versions" DROP COLUMN "manifest";--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_manager_bound" CHECK (('manager' = any("api_tokens"."scopes")) = ("api_tokens"."datacenter" is not null and "api_tokens"."region" is not null and "api_tokens"."project_id" is null));--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_scopes_valid" CHECK ("api_tokens"."scopes" <@ array['read','write','admin','manager']::text[] and cardinality("api_tokens"."scopes") > 0);