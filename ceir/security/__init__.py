"""Who is calling and what they may do: principals and roles
(:mod:`ceir.security.principals`), bearer tokens (:mod:`~ceir.security.tokens`),
certificates (:mod:`~ceir.security.certs`) and the method -> roles table
(:mod:`~ceir.security.roles`). No gRPC here: :mod:`ceir.server.access` enforces it."""
