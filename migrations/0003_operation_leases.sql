DROP INDEX "instances_group_idx";--> statement-breakpoint
ALTER TABLE "operations" ADD COLUMN "lease_owner" text;--> statement-breakpoint
ALTER TABLE "operations" ADD COLUMN "lease_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "operations" ADD COLUMN "attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "operations" ADD COLUMN "not_before" timestamp with time zone;--> statement-breakpoint
CREATE UNIQUE INDEX "instances_group_ordinal_uq" ON "instances" USING btree ("vm_group_id","ordinal");--> statement-breakpoint
CREATE INDEX "operations_claimable_idx" ON "operations" USING btree ("state","not_before");