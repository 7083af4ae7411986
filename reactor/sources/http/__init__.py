"""HTTP ingress: CloudEvents and signed webhooks into the app, through an ASGI application.

The manual (its events, guarantees, settings and statistics, and how to test it) is the
documentation's "HTTP ingress and webhooks" page: ``docs/triggers/http.md`` in the repository
(``mkdocs serve`` to read the site).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, Unpack

from reactor import ConsumerOptions, Handler, validators
from reactor.abc import App, export_from

from ._asgi import Message, Receive, Reject, Scope, Send
from ._ingress import (
    DEFAULT_MAX_BODY,
    RESERVED_SOURCE_PREFIX,
    RESERVED_TYPE_PREFIX,
    HttpIngress,
    IngressSettings,
)
from ._receivers import Once, Receiver, Reply, Request
from ._webhooks import (
    DEFAULT_REPLAY_CACHE,
    DEFAULT_TOLERANCE,
    SOURCE_PREFIX,
    Scheme,
    Webhook,
    WebhookOptions,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_REPLAY_CACHE",
    "DEFAULT_TOLERANCE",
    "RESERVED_SOURCE_PREFIX",
    "RESERVED_TYPE_PREFIX",
    "SOURCE_PREFIX",
    "HttpIngress",
    "IngressSettings",
    "Message",
    "Once",
    "Receive",
    "Receiver",
    "Reject",
    "Reply",
    "Request",
    "Scheme",
    "Scope",
    "Send",
    "Webhook",
    "WebhookOptions",
    "asgi",
    "on_webhook",
]

H = TypeVar("H", bound=Handler)


def asgi(app: App, /, **settings: Unpack[IngressSettings]) -> HttpIngress:
    """Return the app's HTTP ingress, an ASGI application, creating it on first use.

    The ingress takes CloudEvents (binary, structured or batched) at its root and JSON
    webhooks at the paths routed with :func:`on_webhook`, and answers 202 once every
    event is in the ingestion queue. Serve it standalone (``uvicorn mymodule:app.asgi``:
    it then starts and stops the app from the server's lifespan) or mount it in FastAPI
    or Starlette and run ``async with app:`` in the host's lifespan.

    The settings given are set on the ingress (those left out keep their value; they
    are also attributes: ``app.asgi.max_body = 4 * 2**20``)::

        asgi(app, token=os.environ["INGRESS_TOKEN"], allow_types=["com.example.*"])

    :param app: the app to publish into
    :param settings: the :class:`IngressSettings` to set
    :raises TypeError: *app* is not an app, or a setting of the wrong type or name
    :raises ValueError: a bad setting (nothing is changed then)
    :return: the same :class:`HttpIngress` on every call for that app
    """
    validators.keywords("asgi", settings, IngressSettings)
    for source in app.sources:
        if isinstance(source, HttpIngress) and source.app is app:
            ingress = source
            break
    else:
        ingress = HttpIngress(app)
        app.add_source(ingress)
    if settings:
        # Check every setting on a scratch ingress first: all of them apply, or none.
        HttpIngress(app, **settings)
        for name, value in settings.items():
            setattr(ingress, name, value)
    return ingress


def on_webhook(
    app: App,
    /,
    path: str,
    *,
    type: str,
    secret: str | bytes | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    scheme: Scheme = "standard",
    **options: Unpack[ConsumerOptions],
) -> Callable[[H], H]:
    """Decorate a handler for the JSON webhooks ``POST``-ed to *path* of ``app.asgi``.

    Routes *path* on the app's ingress (:meth:`HttpIngress.webhook`) and subscribes the
    handler to the route's events only: type *type*, source ``"/reactor/http" + path``,
    the parsed JSON body as ``data`` and the delivery id as ``id``. Several handlers may
    share a path when they give the same route settings. With a *secret*, requests must
    be signed by the *scheme* the sender uses::

        @on_webhook(app, "/github", type="com.github.push", secret=..., scheme="github")
        @on_webhook(app, "/stripe", type="com.stripe.event", secret="whsec_...",
                    scheme="stripe")

    * ``"standard"`` (`Standard Webhooks <https://www.standardwebhooks.com>`_):
      ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers; the
      event's id is the ``webhook-id``.
    * ``"github"``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` under
      the secret as typed in GitHub's settings; the event's id is the
      ``X-GitHub-Delivery`` header, its subject the ``X-GitHub-Event`` header
      (``"push"``, ...). GitHub signs no timestamp: a delivery id is refused again for
      *tolerance* seconds after it was accepted, and no longer.
    * ``"stripe"``: ``Stripe-Signature: t=<timestamp>,v1=<hex>`` (one or more ``v1``),
      an HMAC-SHA256 of ``"{t}.{body}"`` under the endpoint's signing secret
      (``"whsec_..."``, used as is); ``t`` must be within *tolerance* of now. The
      event's id is the body's ``id`` (``"evt_..."``), its subject the body's ``type``
      (``"payment_intent.succeeded"``, ...).

    In every scheme a repeated id is answered 200 without publishing (see the module
    docs).

    :param app: the app whose ingress (``app.asgi``) takes the webhooks
    :param path: the path below the ingress, e.g. ``"/github"`` (a trailing slash is
        ignored; ``"/"`` is the CloudEvents endpoint)
    :param type: the ``type`` of the events
    :param secret: the key the sender signs with: for ``"standard"``, ``"whsec_"``
        followed by base64 (as senders show it), base64 alone, or raw ``bytes``; for
        ``"github"`` and ``"stripe"``, the secret's text (or ``bytes``); ``None`` takes
        unsigned requests (``"standard"`` only)
    :param tolerance: seconds a signature's timestamp may differ from the app's clock
    :param scheme: the sender's signature scheme: ``"standard"`` (Standard Webhooks,
        the default), ``"github"`` (``X-Hub-Signature-256``) or ``"stripe"``
        (``Stripe-Signature``)
    :param options: the consumer's ``name``, ``concurrency``, ``ordered_by``,
        ``timeout`` and ``retry`` (:class:`~reactor.ConsumerOptions`)
    :raises TypeError: an option of the wrong type or name
    :raises ValueError: a bad option, or *path* is routed already with other settings
    :return: a decorator that subscribes the handler and returns it unchanged
    """
    validators.keywords("on_webhook", options, ConsumerOptions)
    route = asgi(app).webhook(path, type=type, secret=secret, tolerance=tolerance, scheme=scheme)

    def decorate(handler: H) -> H:
        app.subscribe(route.type, handler, source=route.source, **options)
        return handler

    return decorate


export_from(__name__, globals())
