ALTER TABLE "vm_groups" ADD COLUMN "distribution" text;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD COLUMN "datacenters" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD CONSTRAINT "vm_groups_distribution_valid" CHECK (distribution in ('even', 'any'));--> statement-breakpoint
ALTER TABLE "vm_groups" ADD CONSTRAINT "vm_groups_distribution_regional" CHECK ("vm_groups"."distribution" is null or ("vm_groups"."region" is not null and "vm_groups"."datacenter" is null));--> statement-breakpoint
-- Groups placed before regional groups existed run in their one datacenter.
UPDATE "vm_groups" SET "datacenters" = ARRAY["datacenter"] WHERE "datacenter" IS NOT NULL;