-- A revocation of the department's confirmation still owed when a payment ended unpaid is
-- recorded in the transaction that ends the payment, so that no later step has to land for
-- the sweeper to find it; the department_revoked note clears it. Payments that ended before
-- this column say it with their audit trail's notes, which the sweeper still reads
-- (store/sweeps.py). A constant default makes this a catalogue change, without rewriting
-- the table; the lock it needs is waited for 5 s at most, then the migration fails and is
-- run again rather than queueing every payment behind it.
SET LOCAL lock_timeout = '5s';
ALTER TABLE payments ADD COLUMN department_revoke_owed boolean NOT NULL DEFAULT false;
