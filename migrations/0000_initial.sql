CREATE TABLE "api_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"project_id" text,
	"secret_hash" text NOT NULL,
	"scopes" text[] NOT NULL,
	"bootstrap" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "api_tokens_secret_hash_unique" UNIQUE("secret_hash"),
	CONSTRAINT "api_tokens_scopes_valid" CHECK ("api_tokens"."scopes" <@ array['read','write','admin']::text[] and cardinality("api_tokens"."scopes") > 0),
	CONSTRAINT "api_tokens_admin_has_no_project" CHECK (not ('admin' = any("api_tokens"."scopes")) or "api_tokens"."project_id" is null)
);
--> statement-breakpoint
CREATE TABLE "datacenters" (
	"name" text PRIMARY KEY NOT NULL,
	"region" text NOT NULL,
	"manager_url" text,
	"driver" text NOT NULL,
	"capacity_vcpus" integer NOT NULL,
	"capacity_memory_mb" integer NOT NULL,
	"capacity_disk_bytes" bigint NOT NULL,
	"free_vcpus" integer,
	"free_memory_mb" integer,
	"free_disk_bytes" bigint,
	"chunk_count" integer,
	"image_count" integer,
	"last_heartbeat_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "datacenters_driver_valid" CHECK (driver in ('qemu'))
);
--> statement-breakpoint
CREATE TABLE "idempotency_keys" (
	"principal" text NOT NULL,
	"key" text NOT NULL,
	"request_hash" text NOT NULL,
	"status" integer NOT NULL,
	"body" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "idempotency_keys_principal_key_pk" PRIMARY KEY("principal","key")
);
--> statement-breakpoint
CREATE TABLE "image_replicas" (
	"image_id" text NOT NULL,
	"version" integer NOT NULL,
	"datacenter" text NOT NULL,
	"local_id" text,
	"state" text DEFAULT 'pending' NOT NULL,
	"bytes_done" bigint DEFAULT 0 NOT NULL,
	"bytes_total" bigint,
	"on_demand" boolean DEFAULT false NOT NULL,
	"last_used_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "image_replicas_image_id_version_datacenter_pk" PRIMARY KEY("image_id","version","datacenter"),
	CONSTRAINT "image_replicas_state_valid" CHECK (state in ('pending', 'transferring', 'available', 'stale', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "image_versions" (
	"image_id" text NOT NULL,
	"version" integer NOT NULL,
	"size" bigint NOT NULL,
	"digest" text NOT NULL,
	"manifest" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "image_versions_image_id_version_pk" PRIMARY KEY("image_id","version"),
	CONSTRAINT "image_versions_version_positive" CHECK ("image_versions"."version" >= 1),
	CONSTRAINT "image_versions_digest_format" CHECK ("image_versions"."digest" ~ '^sha256:[0-9a-f]{64}$')
);
--> statement-breakpoint
CREATE TABLE "images" (
	"id" text PRIMARY KEY NOT NULL,
	"project_id" text NOT NULL,
	"name" text NOT NULL,
	"format" text NOT NULL,
	"origin_region" text NOT NULL,
	"state" text DEFAULT 'awaiting-upload' NOT NULL,
	"current_version" integer,
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"replicate_to" text[] DEFAULT '{}'::text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "images_format_valid" CHECK (format in ('raw', 'qcow2', 'iso')),
	CONSTRAINT "images_state_valid" CHECK (state in ('awaiting-upload', 'available'))
);
--> statement-breakpoint
CREATE TABLE "instances" (
	"id" text PRIMARY KEY NOT NULL,
	"vm_group_id" text NOT NULL,
	"ordinal" integer NOT NULL,
	"datacenter" text NOT NULL,
	"image_version" integer,
	"local_id" text,
	"state" text DEFAULT 'pending' NOT NULL,
	"state_reason" text,
	"address" text,
	"guest_attributes" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"boot_log_tail" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "instances_state_valid" CHECK (state in ('pending', 'transferring-image', 'starting', 'running', 'ready', 'stopped', 'failed', 'unknown'))
);
--> statement-breakpoint
CREATE TABLE "operations" (
	"id" text PRIMARY KEY NOT NULL,
	"project_id" text,
	"kind" text NOT NULL,
	"target_type" text NOT NULL,
	"target_id" text NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"progress" jsonb DEFAULT '{"step":null,"bytes_done":0,"bytes_total":null,"children":[]}'::jsonb NOT NULL,
	"input" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"error" jsonb,
	"result" jsonb,
	"cancel_requested" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "operations_state_valid" CHECK (state in ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
	CONSTRAINT "operations_kind_valid" CHECK (kind in ('create-vm-group', 'update-vm-group', 'delete-vm-group', 'replicate-image', 'distribute-image-version', 'delete-image'))
);
--> statement-breakpoint
CREATE TABLE "projects" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "projects_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "regions" (
	"name" text PRIMARY KEY NOT NULL,
	"display_name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "vm_groups" (
	"id" text PRIMARY KEY NOT NULL,
	"project_id" text NOT NULL,
	"name" text NOT NULL,
	"image_id" text NOT NULL,
	"image_version" integer,
	"region" text,
	"placement" jsonb,
	"datacenter" text,
	"size" integer NOT NULL,
	"vcpus" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"metadata_from" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "vm_groups_state_valid" CHECK (state in ('pending', 'provisioning', 'running', 'ready', 'updating', 'deleting', 'failed')),
	CONSTRAINT "vm_groups_size_valid" CHECK ("vm_groups"."size" >= 0),
	CONSTRAINT "vm_groups_machine_valid" CHECK ("vm_groups"."vcpus" >= 1 and "vm_groups"."memory_mb" >= 64),
	CONSTRAINT "vm_groups_one_placement" CHECK (("vm_groups"."region" is null) <> ("vm_groups"."placement" is null))
);
--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "datacenters" ADD CONSTRAINT "datacenters_region_regions_name_fk" FOREIGN KEY ("region") REFERENCES "public"."regions"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "image_replicas" ADD CONSTRAINT "image_replicas_datacenter_datacenters_name_fk" FOREIGN KEY ("datacenter") REFERENCES "public"."datacenters"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "image_replicas" ADD CONSTRAINT "image_replicas_image_id_version_image_versions_image_id_version_fk" FOREIGN KEY ("image_id","version") REFERENCES "public"."image_versions"("image_id","version") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "image_versions" ADD CONSTRAINT "image_versions_image_id_images_id_fk" FOREIGN KEY ("image_id") REFERENCES "public"."images"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_origin_region_regions_name_fk" FOREIGN KEY ("origin_region") REFERENCES "public"."regions"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_vm_group_id_vm_groups_id_fk" FOREIGN KEY ("vm_group_id") REFERENCES "public"."vm_groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_datacenter_datacenters_name_fk" FOREIGN KEY ("datacenter") REFERENCES "public"."datacenters"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "operations" ADD CONSTRAINT "operations_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD CONSTRAINT "vm_groups_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD CONSTRAINT "vm_groups_image_id_images_id_fk" FOREIGN KEY ("image_id") REFERENCES "public"."images"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD CONSTRAINT "vm_groups_region_regions_name_fk" FOREIGN KEY ("region") REFERENCES "public"."regions"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD CONSTRAINT "vm_groups_datacenter_datacenters_name_fk" FOREIGN KEY ("datacenter") REFERENCES "public"."datacenters"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_tokens_project_idx" ON "api_tokens" USING btree ("project_id","id");--> statement-breakpoint
CREATE INDEX "datacenters_region_idx" ON "datacenters" USING btree ("region");--> statement-breakpoint
CREATE UNIQUE INDEX "image_replicas_local_id_uq" ON "image_replicas" USING btree ("datacenter","local_id");--> statement-breakpoint
CREATE INDEX "image_replicas_datacenter_idx" ON "image_replicas" USING btree ("datacenter");--> statement-breakpoint
CREATE UNIQUE INDEX "images_project_name_uq" ON "images" USING btree ("project_id","name");--> statement-breakpoint
CREATE INDEX "images_project_id_idx" ON "images" USING btree ("project_id","id");--> statement-breakpoint
CREATE INDEX "instances_group_idx" ON "instances" USING btree ("vm_group_id","ordinal");--> statement-breakpoint
CREATE INDEX "instances_datacenter_idx" ON "instances" USING btree ("datacenter");--> statement-breakpoint
CREATE INDEX "operations_project_id_idx" ON "operations" USING btree ("project_id","id");--> statement-breakpoint
CREATE INDEX "operations_target_idx" ON "operations" USING btree ("target_id");--> statement-breakpoint
CREATE UNIQUE INDEX "vm_groups_project_name_uq" ON "vm_groups" USING btree ("project_id","name");--> statement-breakpoint
CREATE INDEX "vm_groups_project_id_idx" ON "vm_groups" USING btree ("project_id","id");--> statement-breakpoint
CREATE INDEX "vm_groups_image_idx" ON "vm_groups" USING btree ("image_id");