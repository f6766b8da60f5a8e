-- Webhooks: a department's endpoints, the events of its payments and refunds, and every
-- delivery attempt. An event is written in the same transaction as the state change it
-- tells of (a transactional outbox); a relay in the records workers starts one durable
-- delivery workflow per event (workflows/webhook.py).
CREATE TABLE webhook_endpoints (
    id           text PRIMARY KEY,
    department   text NOT NULL REFERENCES departments (code),
    url          text NOT NULL,
    events       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);
CREATE INDEX webhook_endpoints_department ON webhook_endpoints (department)
    WHERE disabled_at IS NULL;

CREATE TABLE webhook_events (
    id             text PRIMARY KEY,
    department     text NOT NULL REFERENCES departments (code),
    type           text NOT NULL,
    payment_id     text NOT NULL REFERENCES payments (id),
    refund_id      text,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    dispatched_at  timestamptz
);
-- One event of each type per payment (and per refund): a retried transaction adds none.
CREATE UNIQUE INDEX webhook_events_once
    ON webhook_events (type, payment_id, coalesce(refund_id, ''));
CREATE INDEX webhook_events_undispatched ON webhook_events (created_at)
    WHERE dispatched_at IS NULL;

CREATE TABLE webhook_deliveries (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL REFERENCES webhook_events (id),
    endpoint_id  text NOT NULL REFERENCES webhook_endpoints (id),
    attempt      integer NOT NULL CHECK (attempt > 0),
    status_code  integer,
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id, endpoint_id);
