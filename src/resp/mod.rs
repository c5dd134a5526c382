//! The Redis protocol front door: RESP2/RESP3 codec, command table, TCP server.
