"""``epay seed``: the sandbox catalogue and e-Dirham cards; safe to run again."""

from __future__ import annotations

import asyncpg
import httpx

from commands.catalogue import DEPARTMENTS, SANDBOX_E_DIRHAM_CARDS
from epay.config import Settings
from store import catalogue, department_secrets


async def seed_catalogue(pool: asyncpg.Pool, settings: Settings) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for dept in DEPARTMENTS:
            confirm_url = f"{settings.department_base_url.rstrip('/')}/{dept.code}"
            await catalogue.upsert_department(
                conn, dept.code, dept.name_en, dept.name_ar, confirm_url
            )
            for svc in dept.services:
                await catalogue.upsert_service(
                    conn,
                    dept.code,
                    svc.code,
                    svc.name_en,
                    svc.name_ar,
                    svc.fee,
                    svc.exempt_from_added_fees,
                )


async def seed_e_dirham_cards(settings: Settings) -> None:
    """(Re)create the sandbox e-Dirham cards at the issuer, with their balances and PINs."""
    async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
        for number, pin, balance, blocked in SANDBOX_E_DIRHAM_CARDS:
            response = await http.post(
                f"{settings.issuer_url}/_admin/cards",
                json={"card_number": number, "pin": pin, "balance": balance, "blocked": blocked},
            )
            response.raise_for_status()


async def ensure_signing_secrets(pool: asyncpg.Pool, settings: Settings) -> list[str]:
    """Give every department without an active signing secret one; the departments given
    one (their secrets reach a real department out of band, and the sandbox's through
    ``share_signing_secrets_with_sandbox``)."""
    made: list[str] = []
    for code in await catalogue.department_codes(pool):
        if not await department_secrets.active(pool, settings.token_secret, code):
            await department_secrets.create(pool, settings.token_secret, code)
            made.append(code)
    return made


async def share_signing_secrets_with_sandbox(pool: asyncpg.Pool, settings: Settings) -> None:
    """Hand the sandbox's departments the secrets ePay signs their calls with (what a real
    department is given out of band); outside production only."""
    async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
        for code in await catalogue.department_codes(pool):
            held = await department_secrets.active(pool, settings.token_secret, code)
            if not held:
                continue
            response = await http.put(
                f"{settings.department_base_url.rstrip('/')}/{code}/_admin/signing-secrets",
                json={"secrets": [s.secret for s in held]},
            )
            response.raise_for_status()
