//! Server-wide behaviour: health, reflection, gRPC-web, request ids, error catalogue.
