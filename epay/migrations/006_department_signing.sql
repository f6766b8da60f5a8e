-- Each department's signing secrets (epay/signing.py): every request ePay sends to the
-- department is signed with each of its active secrets, so that a rotation can overlap.
-- A secret is sealed (AES-256-GCM under a key derived from EPAY_TOKEN_SECRET), never stored
-- in clear; retiring one ends its overlap.
CREATE TABLE department_signing_secrets (
    id          bigserial PRIMARY KEY,
    department  text NOT NULL REFERENCES departments (code),
    nonce       bytea NOT NULL CHECK (length(nonce) = 12),
    sealed      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
CREATE INDEX department_signing_secrets_active
    ON department_signing_secrets (department) WHERE retired_at IS NULL;
