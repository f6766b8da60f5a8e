-- A refund's department notice, once the department has taken it: the sweeper starts again
-- the workflow of a succeeded refund whose notice was never taken (its workflow terminated
-- after the money went back), which tells the department, once. Refunds that succeeded
-- before this column are taken as told: their workflows ran to their end.
ALTER TABLE refunds ADD COLUMN department_notified_at timestamptz;
UPDATE refunds SET department_notified_at = updated_at WHERE state = 'succeeded';
CREATE INDEX refunds_unfinished ON refunds (updated_at)
    WHERE state = 'pending' OR (state = 'succeeded' AND department_notified_at IS NULL);
