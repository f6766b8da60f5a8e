-- Refunds: several per payment, each a durable workflow (workflows/refund.py). The sum of a
-- payment's refunds that are not failed never passes its captured total: the API checks it
-- with the payment's row locked (api/refunds.py).
CREATE TABLE refunds (
    id            text PRIMARY KEY,
    payment_id    text NOT NULL REFERENCES payments (id),
    department    text NOT NULL REFERENCES departments (code),
    amount        bigint NOT NULL CHECK (amount > 0),
    reason        text,
    state         text NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    failure_code  text,
    -- how the amount splits over the payment's lines: [{"code": ..., "amount": ...}]
    lines         jsonb NOT NULL,
    workflow_id   text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id, created_at);

-- The ledger holds one capture journal a payment and one reversing journal a refund.
ALTER TABLE ledger_journals ADD COLUMN refund_id text REFERENCES refunds (id);
ALTER TABLE ledger_journals DROP CONSTRAINT ledger_journals_payment_id_kind_key;
CREATE UNIQUE INDEX ledger_journals_one_capture ON ledger_journals (payment_id)
    WHERE kind = 'capture';
CREATE UNIQUE INDEX ledger_journals_one_per_refund ON ledger_journals (refund_id)
    WHERE refund_id IS NOT NULL;
ALTER TABLE ledger_journals ADD CONSTRAINT ledger_journals_refund_kind
    CHECK ((kind = 'refund') = (refund_id IS NOT NULL));
