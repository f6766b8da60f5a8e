-- References that differ only in case or spaces are one invoice (INV-1, inv-1 and "INV-1 ";
-- "INV 1" and INV1): at most one live or paid reservation among them. The key is
-- domain.references.reference_key (Unicode NFKC, no whitespace, upper case), computed by the
-- store for new rows and here, by the same rule, for the rows written before this migration.

ALTER TABLE fee_reservations ADD COLUMN reference_key text;
ALTER TABLE payments ADD COLUMN reference_key text;

UPDATE fee_reservations
   SET reference_key = upper(regexp_replace(normalize(reference, NFKC), '\s', '', 'g'));
UPDATE payments
   SET reference_key = upper(regexp_replace(normalize(reference, NFKC), '\s', '', 'g'));

ALTER TABLE fee_reservations ALTER COLUMN reference_key SET NOT NULL;
ALTER TABLE payments ALTER COLUMN reference_key SET NOT NULL;

-- At most one live (held) or paid (consumed) reservation per department and reference key.
-- Should rows from before this migration break that rule, creating the index fails and names
-- the duplicated key, and the migration leaves everything as it was: which of the two gives
-- way (release or refund) is an operator's decision, not this migration's.
DROP INDEX fee_reservations_one_live;
CREATE UNIQUE INDEX fee_reservations_one_live
    ON fee_reservations (department, reference_key) WHERE status IN ('held', 'consumed');

-- The list filter ?reference= matches by key.
DROP INDEX payments_department_reference;
CREATE INDEX payments_department_reference_key ON payments (department, reference_key);
