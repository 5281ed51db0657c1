CREATE TABLE "firewall_rules" (
	"id" text PRIMARY KEY NOT NULL,
	"network_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"priority" integer NOT NULL,
	"action" text NOT NULL,
	"protocol" text NOT NULL,
	"ports" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"source_cidr" text,
	"source_vm_group" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "firewall_rules_priority_valid" CHECK ("firewall_rules"."priority" between 0 and 65535),
	CONSTRAINT "firewall_rules_action_valid" CHECK (action in ('allow', 'deny')),
	CONSTRAINT "firewall_rules_protocol_valid" CHECK (protocol in ('tcp', 'udp', 'icmp', 'all')),
	CONSTRAINT "firewall_rules_one_source" CHECK (("firewall_rules"."source_cidr" is null) <> ("firewall_rules"."source_vm_group" is null))
);
--> statement-breakpoint
ALTER TABLE "firewall_rules" ADD CONSTRAINT "firewall_rules_network_id_networks_id_fk" FOREIGN KEY ("network_id") REFERENCES "public"."networks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "firewall_rules_network_name_uq" ON "firewall_rules" USING btree ("network_id","name");