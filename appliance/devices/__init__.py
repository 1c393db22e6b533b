"""Hardware adapters (trigger, status LED, buzzer, light panel, camera), each with a simulated twin."""
