-- The card vault is emptied by payment (DELETE ... WHERE payment_id = $1 when a payment
-- settles or ends unpaid): without an index every such delete read the whole table.
CREATE INDEX card_vault_payment ON card_vault (payment_id);
