-- Core schema: catalogue, keys, payments read model, reservations, ledger, receipts, audit.

CREATE TABLE departments (
    code         text PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{1,15}$'),
    name_en      text NOT NULL,
    name_ar      text NOT NULL,
    confirm_url  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Department API keys: only a SHA-256 of the key is kept; the key is shown once.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    department  text NOT NULL REFERENCES departments (code),
    key_hash    bytea NOT NULL UNIQUE,
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE services (
    department              text NOT NULL REFERENCES departments (code),
    code                    text NOT NULL,
    name_en                 text NOT NULL,
    name_ar                 text NOT NULL,
    fee                     bigint CHECK (fee IS NULL OR fee > 0),  -- NULL: variable fee
    exempt_from_added_fees  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (department, code)
);

-- The read model the API serves; the payment workflow is the source of truth and
-- writes every change here through its activities.
CREATE TABLE payments (
    id                       text PRIMARY KEY,
    department               text NOT NULL REFERENCES departments (code),
    service_code             text NOT NULL,
    reference                text NOT NULL CHECK (length(reference) BETWEEN 1 AND 64),
    state                    text NOT NULL CHECK (state IN ('reserved', 'authorising',
                               'requires_action', 'confirming', 'capturing', 'succeeded',
                               'failed', 'cancelled', 'expired')),
    amount_total             bigint NOT NULL CHECK (amount_total > 0),
    currency                 text NOT NULL DEFAULT 'AED' CHECK (currency = 'AED'),
    lines                    jsonb NOT NULL,
    description              text,
    payer                    jsonb,
    return_url               text,
    metadata                 jsonb NOT NULL DEFAULT '{}',
    method_type              text CHECK (method_type IN ('e_dirham', 'card')),
    method_brand             text,
    method_last4             text CHECK (method_last4 ~ '^[0-9]{4}$'),
    failure_code             text,
    failure_message          text,
    department_confirmation  text,
    workflow_id              text NOT NULL UNIQUE,
    expires_at               timestamptz NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (department, service_code) REFERENCES services (department, code)
);
CREATE INDEX payments_department_created ON payments (department, created_at DESC, id DESC);
CREATE INDEX payments_department_reference ON payments (department, reference);
CREATE INDEX payments_department_state ON payments (department, state, created_at DESC);

-- A reservation locks a department's invoice or fine so that it cannot be paid twice.
CREATE TABLE fee_reservations (
    payment_id   text PRIMARY KEY REFERENCES payments (id),
    department   text NOT NULL,
    reference    text NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    status       text NOT NULL CHECK (status IN ('held', 'consumed', 'released')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- At most one live (held) or paid (consumed) reservation per department and reference.
CREATE UNIQUE INDEX fee_reservations_one_live
    ON fee_reservations (department, reference) WHERE status IN ('held', 'consumed');

-- Audit trail: every state change and operator action, with time and actor.
CREATE TABLE payment_events (
    id           bigserial PRIMARY KEY,
    payment_id   text NOT NULL REFERENCES payments (id),
    event        text NOT NULL,
    from_state   text,
    to_state     text,
    actor        text NOT NULL,
    detail       text,
    dedupe_key   text NOT NULL UNIQUE,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX payment_events_payment ON payment_events (payment_id, id);

-- Card data, encrypted (AES-256-GCM), for the authorising activity to resolve a token.
CREATE TABLE card_vault (
    token        text PRIMARY KEY,
    payment_id   text NOT NULL REFERENCES payments (id),
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Idempotency keys of POST /v1/payments, per department, kept 24 hours.
CREATE TABLE idempotency_keys (
    department      text NOT NULL REFERENCES departments (code),
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    text NOT NULL,
    payment_id      text NOT NULL,
    response_status integer,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (department, key)
);

-- Double-entry ledger: a journal per posting, entries signed (debit > 0, credit < 0).
CREATE TABLE ledger_journals (
    id          bigserial PRIMARY KEY,
    payment_id  text NOT NULL REFERENCES payments (id),
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payment_id, kind)
);
CREATE TABLE ledger_entries (
    id          bigserial PRIMARY KEY,
    journal_id  bigint NOT NULL REFERENCES ledger_journals (id),
    account     text NOT NULL,
    amount      bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX ledger_entries_journal ON ledger_entries (journal_id);

-- Checked at commit, so a journal's entries can be inserted one by one in a transaction.
CREATE FUNCTION ledger_journal_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    imbalance bigint;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO imbalance
      FROM ledger_entries WHERE journal_id = NEW.journal_id;
    IF imbalance <> 0 THEN
        RAISE EXCEPTION 'ledger journal % does not balance (off by %)', NEW.journal_id, imbalance
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_entries_balance
    AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_must_balance();

-- The ledger is append-only: a mistake is corrected by a new journal, never an edit.
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows cannot be changed or deleted' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_journals_append_only BEFORE UPDATE OR DELETE ON ledger_journals
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

-- Receipt numbers are gap-free per department: the counter row is locked and bumped in the
-- same transaction that inserts the receipt, so a rolled-back receipt takes its number back.
CREATE TABLE receipt_counters (
    department   text PRIMARY KEY REFERENCES departments (code),
    last_number  bigint NOT NULL DEFAULT 0
);
CREATE TABLE receipts (
    department   text NOT NULL REFERENCES departments (code),
    number       bigint NOT NULL,
    receipt_number text NOT NULL UNIQUE,
    payment_id   text NOT NULL UNIQUE REFERENCES payments (id),
    amount       bigint NOT NULL CHECK (amount > 0),
    issued_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (department, number)
);
