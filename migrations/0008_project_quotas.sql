ALTER TABLE "projects" ADD COLUMN "quota_storage_bytes" bigint;--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "quota_images" integer;--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "quota_instances" integer;--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "quota_vcpus" integer;--> statement-breakpoint
ALTER TABLE "projects" ADD CONSTRAINT "projects_quotas_valid" CHECK ("projects"."quota_storage_bytes" >= 0 and "projects"."quota_images" >= 0 and "projects"."quota_instances" >= 0 and "projects"."quota_vcpus" >= 0);