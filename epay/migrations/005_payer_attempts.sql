-- A payment on the hosted page may take another method after a decline (up to three):
-- how many it has had declined, and the last decline's code (the department's API shows the
-- precise code; the payer's page shows one generic message).
ALTER TABLE payments
    ADD COLUMN declines     integer NOT NULL DEFAULT 0 CHECK (declines >= 0),
    ADD COLUMN last_decline text;

-- Every payment method handed over by a payer, for the payer surface's limits (api/abuse.py):
-- per payment, per hosted-page session, per card and per client address. The card is kept
-- as a keyed hash (HMAC-SHA256 under a key derived from EPAY_TOKEN_SECRET), never as its
-- number; the session as a hash of its id. `outcome` is null until the payment's records
-- say how the attempt ended (`authorised` or the failure code).
CREATE TABLE payer_attempts (
    id          bigserial PRIMARY KEY,
    payment_id  text NOT NULL REFERENCES payments (id),
    attempt     integer NOT NULL CHECK (attempt > 0),
    method_type text NOT NULL CHECK (method_type IN ('e_dirham', 'card')),
    card_key    bytea NOT NULL CHECK (length(card_key) = 32),
    session_key bytea CHECK (length(session_key) = 32),
    client      text NOT NULL,
    outcome     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payer_attempts_payment ON payer_attempts (payment_id, attempt);
CREATE INDEX payer_attempts_card ON payer_attempts (card_key, created_at);
CREATE INDEX payer_attempts_client ON payer_attempts (client, created_at);
CREATE INDEX payer_attempts_session ON payer_attempts (session_key, created_at);
