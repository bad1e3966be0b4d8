"""The OCPP gateway (charging-manager.md §4): wallboxes behind the appliance appear at a backend."""
