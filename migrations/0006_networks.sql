CREATE TABLE "networks" (
	"id" text PRIMARY KEY NOT NULL,
	"project_id" text NOT NULL,
	"name" text NOT NULL,
	"cidr" text NOT NULL,
	"subnet_prefix_length" integer NOT NULL,
	"vni" integer GENERATED ALWAYS AS IDENTITY (sequence name "networks_vni_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 4096 CACHE 1),
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "networks_vni_range" CHECK ("networks"."vni" between 1 and 16777215),
	CONSTRAINT "networks_subnet_prefix_valid" CHECK ("networks"."subnet_prefix_length" between 8 and 29)
);
--> statement-breakpoint
ALTER TABLE "networks" ADD CONSTRAINT "networks_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "networks_project_name_uq" ON "networks" USING btree ("project_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "networks_vni_uq" ON "networks" USING btree ("vni");--> statement-breakpoint
CREATE INDEX "networks_project_id_idx" ON "networks" USING btree ("project_id","id");--> statement-breakpoint
-- Every project has a default network; projects created before networks existed get theirs
-- here. The ID reuses the project ID's time-ordered body, so it is unique and well-formed.
INSERT INTO "networks" ("id", "project_id", "name", "cidr", "subnet_prefix_length")
SELECT 'net_' || substr("id", strpos("id", '_') + 1), "id", 'default', '10.128.0.0/9', 20 FROM "projects"
ON CONFLICT DO NOTHING;
