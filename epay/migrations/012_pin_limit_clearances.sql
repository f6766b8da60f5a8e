-- The wrong-PIN limit of an e-Dirham card (api/abuse.py) has no time window: once a card has
-- met EPAY_PAYER_WRONG_PINS wrong PINs since it last passed the issuer's PIN check on ePay,
-- ePay refuses it until something ends the count. These two tables let an operator end it.

-- Each refusal by the wrong-PIN limit, once per payment and card, so that an operator given
-- the payment a resident was refused on finds the card (the refused method never reaches
-- payer_attempts, and the operator never sees a card number). The card as payer_attempts
-- keeps it: a keyed hash.
CREATE TABLE pin_limit_refusals (
    payment_id text NOT NULL REFERENCES payments (id),
    card_key   bytea NOT NULL CHECK (length(card_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_id, card_key)
);

-- `epay ops clear-pin-limit`: an operator ended a card's wrong-PIN count. The count starts
-- again after the latest of the card's last attempt that passed the PIN check and its last
-- clearance. Kept out of payer_attempts, whose other limits would count a row as a failure.
CREATE TABLE pin_limit_clearances (
    id         bigserial PRIMARY KEY,
    card_key   bytea NOT NULL CHECK (length(card_key) = 32),
    payment_id text NOT NULL REFERENCES payments (id),
    operator   text NOT NULL CHECK (btrim(operator) <> ''),
    reason     text NOT NULL CHECK (btrim(reason) <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pin_limit_clearances_card ON pin_limit_clearances (card_key, created_at);
