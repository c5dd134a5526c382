//! Cluster CA and node certificates with rcgen (used by the CLI and tests).
