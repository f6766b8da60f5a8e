-- The reports (epay report) and the daily settlement read a period's payments and a day's
-- journals across all departments: by time, not by department.
CREATE INDEX payments_created ON payments (created_at);
CREATE INDEX ledger_journals_created ON ledger_journals (created_at);
