//! Cluster logic: routing (local vs forward), replication, rebalance.
