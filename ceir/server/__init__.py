"""The gRPC server: the app (:mod:`ceir.server.app`), the worker supervisor
(:mod:`~ceir.server.supervisor`), one servicer module per proto service
(:mod:`~ceir.server.eir`, :mod:`~ceir.server.device_check`, :mod:`~ceir.server.registry`,
:mod:`~ceir.server.approvals`), the access interceptor (:mod:`~ceir.server.access`), rate
limits (:mod:`~ceir.server.ratelimit`) and transport options
(:mod:`~ceir.server.transport`).

Importing this package imports no grpc: the supervisor forks before anything does.
"""
