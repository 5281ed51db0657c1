DROP INDEX "operations_claimable_idx";--> statement-breakpoint
ALTER TABLE "operations" DROP COLUMN "lease_until";--> statement-breakpoint
ALTER TABLE "operations" DROP COLUMN "not_before";