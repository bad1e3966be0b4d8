"""Simulated devices speaking the real wire protocols (OCPP-J over websocket, Modbus)."""
