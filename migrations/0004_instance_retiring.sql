DROP INDEX "instances_group_ordinal_uq";--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "retiring" boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "instances_group_ordinal_uq" ON "instances" USING btree ("vm_group_id","ordinal") WHERE not "instances"."retiring";