"""The HTTP API: departments start and follow payments; payers authorise them."""
