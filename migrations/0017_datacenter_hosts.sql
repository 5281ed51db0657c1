CREATE TABLE "hosts" (
	"datacenter" text NOT NULL,
	"name" text NOT NULL,
	"state" text NOT NULL,
	"arch" text NOT NULL,
	"capacity_vcpus" integer NOT NULL,
	"capacity_memory_mb" integer NOT NULL,
	"capacity_disk_bytes" bigint NOT NULL,
	"free_vcpus" integer NOT NULL,
	"free_memory_mb" integer NOT NULL,
	"free_disk_bytes" bigint NOT NULL,
	"instance_count" integer NOT NULL,
	"cached_versions" integer NOT NULL,
	"cache_bytes" bigint NOT NULL,
	"last_seen_at" timestamp with time zone NOT NULL,
	CONSTRAINT "hosts_datacenter_name_pk" PRIMARY KEY("datacenter","name"),
	CONSTRAINT "hosts_state_valid" CHECK (state in ('up', 'down')),
	CONSTRAINT "hosts_arch_valid" CHECK (arch in ('x86_64', 'aarch64'))
);
--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "host" text;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD COLUMN "spread_hosts" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "hosts" ADD CONSTRAINT "hosts_datacenter_datacenters_name_fk" FOREIGN KEY ("datacenter") REFERENCES "public"."datacenters"("name") ON DELETE cascade ON UPDATE no action;