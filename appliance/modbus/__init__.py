"""Modbus: bus scheduler, Power Brain driver, meters."""
