ALTER TABLE "operations" DROP CONSTRAINT "operations_kind_valid";--> statement-breakpoint
ALTER TABLE "image_versions" ADD COLUMN "state" text DEFAULT 'active' NOT NULL;--> statement-breakpoint
ALTER TABLE "image_versions" ADD COLUMN "deprecate_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "image_versions" ADD COLUMN "obsolete_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "images" ADD COLUMN "pinned_version" integer;--> statement-breakpoint
ALTER TABLE "images" ADD COLUMN "family" text;--> statement-breakpoint
ALTER TABLE "images" ADD COLUMN "members" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD COLUMN "image_family" text;--> statement-breakpoint
CREATE INDEX "images_project_family_idx" ON "images" USING btree ("project_id","family");--> statement-breakpoint
CREATE INDEX "images_members_idx" ON "images" USING gin ("members");--> statement-breakpoint
ALTER TABLE "image_versions" ADD CONSTRAINT "image_versions_state_valid" CHECK (state in ('active', 'deprecated', 'obsolete', 'deleted'));--> statement-breakpoint
ALTER TABLE "operations" ADD CONSTRAINT "operations_kind_valid" CHECK (kind in ('create-vm-group', 'update-vm-group', 'delete-vm-group', 'replicate-image', 'distribute-image-version', 'delete-image', 'delete-image-version'));