ALTER TABLE "vm_groups" ADD COLUMN "expose" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "vm_groups" ADD COLUMN "endpoints" jsonb DEFAULT '[]'::jsonb NOT NULL;