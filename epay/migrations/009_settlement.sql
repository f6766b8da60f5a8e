-- The daily settlement: one row per business day (Asia/Dubai), replaced by every run of that
-- day (a run is idempotent and can be made again for a past day). `totals` are the ledger's
-- per department and fee line and the partners' files'; `mismatches` each name the payment.
CREATE TABLE settlement_runs (
    business_day  date PRIMARY KEY,
    balanced      boolean NOT NULL,
    totals        jsonb NOT NULL,
    mismatches    jsonb NOT NULL,
    runs          integer NOT NULL DEFAULT 1,
    first_run_at  timestamptz NOT NULL DEFAULT now(),
    last_run_at   timestamptz NOT NULL DEFAULT now()
);
