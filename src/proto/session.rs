//! Per-connection protocol state. STUB.
