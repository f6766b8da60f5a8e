"""The hosted payment page: what the payer opens from ``next_url``.

``GET /pay/{id}?token=...`` exchanges the department's link for a payer session
(``api.payer_session``) and redirects to ``/pay/{id}``, so the token is in no URL after the
first one. The page is Arabic (right to left) by default, English on ``?lang=en``; it is
rendered with every string escaped, and driven by ``/pay/static/pay.js`` through three
JSON calls of its own (``authorise``, ``3ds``, ``status``) that need the session cookie, the
CSRF value of the page's ``<meta>`` and a same-origin request. What the payer is told of a
failure is deliberately coarse: one message for every kind of decline (a card tester learns
nothing), the department's own refusals and the payment window apart.

Every ``/pay`` response carries the headers of ``headers.PAGE_HEADERS`` (``PayPageHeaders``).

The package keeps the name the module had, ``hosted``: "the hosted page" is what the docs,
the tests and the operators call it, and ``api.payer`` (the payer's token API) already
shares the ``/v1`` side, so a name such as ``page`` would say less. Its modules, in the
order a request meets them:

- ``headers``: the headers of every ``/pay`` response (an ASGI middleware);
- ``routes``: the routes, ``/pay/{id}`` and the page's JSON calls;
- ``session``: the payer's session and language cookies, and the checks of the page's calls
  (same origin, session, CSRF value);
- ``view``: what the payer is shown of a payment, and the page's texts (pure);
- ``templates``: the HTML;
- ``receipt``: the receipt as a PDF.

The payment is read as a ``store.payments.PaymentRow``; the department's and the service's
names come from ``store.page``.
"""
