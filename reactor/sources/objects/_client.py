"""The bucket poller's S3 client: botocore, called on worker threads.

botocore (the core of the AWS SDK for Python) is synchronous. Each request of the poller
runs through :func:`anyio.to_thread.run_sync`, which works the same on asyncio and trio;
the asyncio-only wrappers (aiobotocore, aioboto3) would not. botocore brings the standard
AWS credential chain (environment, shared files, SSO, container and instance roles), the
request signing and retries of every AWS SDK, and speaks to any S3-compatible store
through ``endpoint_url`` (MinIO, Ceph RGW, Cloudflare R2, ...).

The client keeps timestamps as the text the server sent (the AWS CLI does the same):
botocore's own timestamp parsing costs more than everything else of a listing, and the
poller only compares them and passes them on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import attrs

from reactor import validators
from reactor.abc import import_extra

__all__ = [
    "ACCESS_KEY_VARIABLE",
    "ENDPOINT_VARIABLE",
    "REGION_VARIABLE",
    "SECRET_KEY_VARIABLE",
    "SESSION_TOKEN_VARIABLE",
    "BucketUrl",
    "Listed",
    "Lister",
    "Page",
    "Settings",
    "botocore_modules",
    "explain",
    "parse_bucket_url",
]

#: The S3 endpoint when ``endpoint_url=`` is not given (else botocore's: ``AWS_ENDPOINT_URL_S3``,
#: ``AWS_ENDPOINT_URL``, then AWS itself).
ENDPOINT_VARIABLE: Final = "REACTOR_S3_ENDPOINT_URL"
#: The region when ``region=`` is not given (else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
#: shared config file, then ``us-east-1``).
REGION_VARIABLE: Final = "REACTOR_S3_REGION"
#: The access key id when ``access_key_id=`` is not given (else the AWS credential chain).
ACCESS_KEY_VARIABLE: Final = "REACTOR_S3_ACCESS_KEY_ID"
#: The secret access key, with :data:`ACCESS_KEY_VARIABLE`.
SECRET_KEY_VARIABLE: Final = "REACTOR_S3_SECRET_ACCESS_KEY"
#: The session token of temporary credentials, with :data:`ACCESS_KEY_VARIABLE` (optional).
SESSION_TOKEN_VARIABLE: Final = "REACTOR_S3_SESSION_TOKEN"

#: The largest page S3 returns (``MaxKeys``).
MAX_PAGE_SIZE: Final = 1000
# Seconds to open a connection and to wait for a response; botocore retries on top
# (its "standard" mode: 3 attempts with jittered backoff).
_CONNECT_TIMEOUT: Final = 10.0
_READ_TIMEOUT: Final = 60.0
_DEFAULT_REGION: Final = "us-east-1"

# S3 error codes that mean "this will not work until someone changes something".
_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "403",
    }
)
_MISSING: Final = frozenset({"NoSuchBucket", "404"})


def botocore_modules() -> tuple[Any, Any, Any]:
    """Import botocore's session, config and exceptions modules, or say how to install them.

    :raises ModuleNotFoundError: botocore is not installed; the message names
        ``pip install 'reactor-events[s3]'``
    """
    session = import_extra("botocore.session", extra="s3")
    config = import_extra("botocore.config", extra="s3")
    exceptions = import_extra("botocore.exceptions", extra="s3")
    return session, config, exceptions


@attrs.frozen
class BucketUrl:
    """A bucket and a key prefix, from ``s3://bucket/prefix``."""

    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_bucket_url(url: str) -> BucketUrl:
    """Split ``s3://bucket/prefix`` into the bucket and the prefix.

    The prefix is everything after the bucket's ``/``, as given: a string prefix of the
    keys, not a directory (``s3://b/in`` matches ``in/x`` and ``inbox``; write ``s3://b/in/``
    for the "directory").

    :raises TypeError: *url* is not a str
    :raises ValueError: not an ``s3://`` URL with a bucket
    """
    validators.name("url", url)
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected an s3://bucket/prefix URL, got {url!r}")
    if "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError(
            f"expected an s3://bucket/prefix URL, got {url!r}: credentials and endpoints are "
            "given with access_key_id=, secret_access_key= and endpoint_url="
        )
    return BucketUrl(parts.netloc, parts.path[1:])


@attrs.frozen(kw_only=True)
class Settings:
    """Where the store is and who the poller is to it; secrets stay out of the repr.

    ``None`` leaves a setting to botocore's own configuration chain.
    """

    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None = attrs.field(repr=False)
    session_token: str | None = attrs.field(repr=False)

    @classmethod
    def resolve(
        cls,
        *,
        endpoint_url: str | None,
        region: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        session_token: str | None,
        environ: Mapping[str, str] = os.environ,
    ) -> Settings:
        """Take each setting from its argument, else its ``REACTOR_S3_*`` variable.

        :raises TypeError: an argument that is not a str
        :raises ValueError: an empty argument, a malformed endpoint, or half a key pair
        """

        def pick(what: str, given: str | None, variable: str) -> str | None:
            if given is not None:
                return validators.name(what, given)
            return environ.get(variable) or None

        endpoint = pick("endpoint_url", endpoint_url, ENDPOINT_VARIABLE)
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"endpoint_url must be an http:// or https:// URL, got {endpoint!r}"
                )
            if parts.password:
                raise ValueError(
                    "endpoint_url must not carry credentials: give access_key_id= and "
                    "secret_access_key= (or the REACTOR_S3_* variables)"
                )
        key_id = pick("access_key_id", access_key_id, ACCESS_KEY_VARIABLE)
        secret = pick("secret_access_key", secret_access_key, SECRET_KEY_VARIABLE)
        token = pick("session_token", session_token, SESSION_TOKEN_VARIABLE)
        if (key_id is None) != (secret is None):
            raise ValueError(
                "give both access_key_id and secret_access_key (arguments or the "
                f"{ACCESS_KEY_VARIABLE} and {SECRET_KEY_VARIABLE} variables), or neither to "
                "use the AWS credential chain"
            )
        if token is not None and key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return cls(
            endpoint_url=endpoint,
            region=pick("region", region, REGION_VARIABLE),
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token,
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """The texts no log line or error may show."""
        return tuple(s for s in (self.secret_access_key, self.session_token) if s)

    def describe(self, where: BucketUrl) -> str:
        """The bucket and endpoint, for log lines and errors (no credentials)."""
        return f"{where} at {self.endpoint_url or 'AWS S3'}"


@attrs.frozen(kw_only=True)
class Listed:
    """One object of a listing: what the poller compares from one poll to the next.

    *etag* and *last_modified* are the server's text (the ETag with its quotes,
    the time as ISO 8601).
    """

    key: str
    etag: str
    size: int
    last_modified: str


@attrs.frozen
class Page:
    """One page of a listing."""

    objects: list[Listed]
    #: the token of the next page, ``None`` on the last one
    next_token: str | None
    #: entries without a key, skipped
    malformed: int


class _S3Client(Protocol):
    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]: ...


class Lister:
    """Lists one bucket prefix page by page. Its methods block: call them on a worker thread.

    botocore clients are thread-safe, so a call left running by a cancelled poll (it is
    abandoned, not waited for) does no harm to the next.
    """

    def __init__(self, settings: Settings, where: BucketUrl, *, page_size: int) -> None:
        self._settings = settings
        self._where = where
        self._page_size = page_size
        self._client: _S3Client | None = None

    @property
    def region(self) -> str:
        """The client's region (known once :meth:`open` ran; the configured one until then)."""
        client = self._client
        if client is not None:
            region: str | None = getattr(getattr(client, "meta", None), "region_name", None)
            if region:
                return region
        return self._settings.region or _DEFAULT_REGION

    def open(self) -> None:
        """Create the client (loading botocore's service model takes a while: a thread)."""
        if self._client is not None:
            return
        session_module, config_module, _ = botocore_modules()
        session = session_module.Session()
        # Timestamps as sent: see the module documentation.
        session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=_as_sent
        )
        settings = self._settings
        config = config_module.Config(
            connect_timeout=_CONNECT_TIMEOUT,
            read_timeout=_READ_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": 3},
            # A custom endpoint (MinIO, Ceph, a local server) seldom resolves
            # bucket.host names: path-style requests work everywhere.
            s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
            user_agent_extra="reactor-events",
        )
        region = (
            settings.region
            or os.environ.get("AWS_REGION")
            or session.get_config_variable("region")
            or _DEFAULT_REGION
        )
        self._client = session.create_client(
            "s3",
            region_name=region,
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            config=config,
        )

    def page(self, token: str | None) -> Page:
        """Fetch the page after *token* (the first page for ``None``)."""
        if self._client is None:
            self.open()
        assert self._client is not None
        arguments: dict[str, Any] = {
            "Bucket": self._where.bucket,
            "Prefix": self._where.prefix,
            "MaxKeys": self._page_size,
        }
        if token is not None:
            arguments["ContinuationToken"] = token
        response = self._client.list_objects_v2(**arguments)
        objects: list[Listed] = []
        malformed = 0
        for entry in response.get("Contents", ()):
            key = entry.get("Key")
            if not isinstance(key, str) or not key:
                malformed += 1
                continue
            objects.append(
                Listed(
                    key=key,
                    etag=str(entry.get("ETag", "")),
                    size=int(entry.get("Size", -1)),
                    last_modified=str(entry.get("LastModified", "")),
                )
            )
        following = response.get("NextContinuationToken")
        if not response.get("IsTruncated") or not following:
            following = None
        return Page(objects, following, malformed)


def _as_sent(text: str) -> str:
    return text


def explain(error: BaseException) -> str | None:
    """Say what to fix for an error that will not go away by itself, else ``None``.

    :param error: what a listing raised
    :return: a hint for a missing bucket, refused credentials or no credentials at all
    """
    _, _, exceptions = botocore_modules()
    if isinstance(error, exceptions.ClientError):
        response = getattr(error, "response", {}) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _MISSING or (not code and status == "404"):
            return "the bucket does not exist"
        if code in _DENIED or status == "403":
            return (
                "access denied: check the credentials and that they allow s3:ListBucket "
                "on this bucket"
            )
        return None
    if isinstance(error, exceptions.NoCredentialsError | exceptions.PartialCredentialsError):
        return (
            "no credentials: give access_key_id= and secret_access_key=, set "
            f"{ACCESS_KEY_VARIABLE} and {SECRET_KEY_VARIABLE}, or configure the AWS "
            "credential chain (AWS_ACCESS_KEY_ID, ~/.aws, an instance role)"
        )
    if isinstance(error, exceptions.EndpointConnectionError):
        return "cannot reach the endpoint: check endpoint_url and that the store runs"
    return None
