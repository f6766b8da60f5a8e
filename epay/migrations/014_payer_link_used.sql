-- The payer's link (next_url's ?token=) is exchanged for a page session once: the first
-- browser to open it stamps the payment here, in the UPDATE ... WHERE payer_link_used_at IS
-- NULL that gives it the session (store/page.py), and any later browser is told the link
-- was used. Once stamped, the link's token no longer hands over a method through the token
-- API either, so the department's token API and the payer's page never share a payment.
-- Payments opened before this column have none (their links open once from now on). A
-- nullable column without a default is a catalogue change, without rewriting the table; the
-- lock it needs is waited for 5 s at most, then the migration fails and is run again rather
-- than queueing every payment behind it.
SET LOCAL lock_timeout = '5s';
ALTER TABLE payments ADD COLUMN payer_link_used_at timestamptz;
