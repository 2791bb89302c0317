//! Operator tools. Every RPC requires a caller whose deployment-wide role is ADMIN.

pub mod ops;
pub mod service;
