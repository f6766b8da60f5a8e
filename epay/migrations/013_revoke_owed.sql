-- A revocation of the department's confirmation still owed when a payment ended unpaid is
-- recorded in the transaction that ends the payment, so that no later step has to land for
-- the sweeper to find it; the department_revoked note clears it. Payments that ended before
-- this column with a pending revocation, as their audit trail says, keep it owed.
ALTER TABLE payments ADD COLUMN department_revoke_owed boolean NOT NULL DEFAULT false;
UPDATE payments SET department_revoke_owed = true
    WHERE EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = payments.id
                    AND e.event = 'department_revoke_pending')
      AND NOT EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = payments.id
                    AND e.event = 'department_revoked');
CREATE INDEX payments_revoke_owed ON payments (updated_at, id) WHERE department_revoke_owed;
