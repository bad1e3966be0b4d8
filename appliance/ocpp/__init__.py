"""OCPP-J 1.6: RPC core (both directions), schemas, server and client."""
