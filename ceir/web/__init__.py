"""The consumer check page, its JSON endpoint, ``/metrics`` and ``/version``
(:mod:`ceir.web.app`); the page's words in two languages (:mod:`~ceir.web.i18n`) and
what it shows (:mod:`~ceir.web.page`)."""


def describe(host: str, port: int, *, tls: bool) -> str:
    """The start-up line's words for a web face on *host*:*port* (no imports: the worker
    supervisor says it before any worker has built one)."""
    shown = f"[{host}]" if ":" in host else host
    return f"web page, /api/v1, /metrics on {'https' if tls else 'http'}://{shown}:{port}"
