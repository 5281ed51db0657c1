-- Keys stored in clear before this migration sat in a catalog other local users could read:
-- they are treated as leaked and dropped, not wrapped. The control plane makes a new key when
-- it starts; tokens signed by the old ones (15 minutes at most) stop verifying.
DELETE FROM "signing_keys";--> statement-breakpoint
ALTER TABLE "signing_keys" ADD COLUMN "wrapped_private_jwk" text NOT NULL;--> statement-breakpoint
ALTER TABLE "signing_keys" ADD COLUMN "signs_from" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "signing_keys" DROP COLUMN "private_jwk";
