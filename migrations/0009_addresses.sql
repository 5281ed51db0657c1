CREATE TABLE "network_subnets" (
	"network_id" text NOT NULL,
	"datacenter" text NOT NULL,
	"index" integer NOT NULL,
	"cidr" text NOT NULL,
	"cursor" integer DEFAULT 1 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "network_subnets_network_id_datacenter_pk" PRIMARY KEY("network_id","datacenter"),
	CONSTRAINT "network_subnets_index_valid" CHECK ("network_subnets"."index" >= 0)
);
--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "network_id" text;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "network_ip" text;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD COLUMN "network_id" text;--> statement-breakpoint
-- Groups made before networks joined their project's default network (every project has one
-- since 0006); their instances follow, and get an address at the group's next reconcile.
UPDATE "vm_groups" SET "network_id" = "networks"."id" FROM "networks"
WHERE "networks"."project_id" = "vm_groups"."project_id" AND "networks"."name" = 'default';--> statement-breakpoint
ALTER TABLE "vm_groups" ALTER COLUMN "network_id" SET NOT NULL;--> statement-breakpoint
UPDATE "instances" SET "network_id" = "vm_groups"."network_id" FROM "vm_groups"
WHERE "vm_groups"."id" = "instances"."vm_group_id";--> statement-breakpoint
ALTER TABLE "network_subnets" ADD CONSTRAINT "network_subnets_network_id_networks_id_fk" FOREIGN KEY ("network_id") REFERENCES "public"."networks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "network_subnets" ADD CONSTRAINT "network_subnets_datacenter_datacenters_name_fk" FOREIGN KEY ("datacenter") REFERENCES "public"."datacenters"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "network_subnets_index_uq" ON "network_subnets" USING btree ("network_id","index");--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_network_id_networks_id_fk" FOREIGN KEY ("network_id") REFERENCES "public"."networks"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD CONSTRAINT "vm_groups_network_id_networks_id_fk" FOREIGN KEY ("network_id") REFERENCES "public"."networks"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "instances_network_ip_uq" ON "instances" USING btree ("network_id","network_ip");