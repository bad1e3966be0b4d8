"""Load management: a pure allocation engine, an independent safety check, and the controller loop."""
