"""Pure payment-domain code shared by the API, workflows and activities: no I/O here."""
