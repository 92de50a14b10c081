"""The consumer check page, its JSON endpoint, ``/metrics`` and ``/version``
(:mod:`ceir.web.app`); the page's words in two languages (:mod:`~ceir.web.i18n`) and
what it shows (:mod:`~ceir.web.page`)."""
