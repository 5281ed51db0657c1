ALTER TABLE "image_replicas" ADD COLUMN "bytes_received" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
UPDATE "image_replicas" SET "bytes_done" = "image_versions"."size", "bytes_total" = "image_versions"."size" FROM "image_versions" WHERE "image_versions"."image_id" = "image_replicas"."image_id" AND "image_versions"."version" = "image_replicas"."version" AND "image_replicas"."state" = 'available';--> statement-breakpoint
UPDATE "image_replicas" SET "bytes_done" = "bytes_total" WHERE "bytes_done" > "bytes_total";
