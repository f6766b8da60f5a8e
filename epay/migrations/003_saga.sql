-- The authorisation (card) or hold (e-Dirham) a payment holds at its partner, so that what
-- is open there can be found and undone, or captured, from the read model alone (the sweeper).
ALTER TABLE payments ADD COLUMN authorisation_id text;

-- Payments the sweeper looks at: open ones, oldest first.
CREATE INDEX payments_open ON payments (updated_at)
    WHERE state NOT IN ('succeeded', 'failed', 'cancelled', 'expired');
