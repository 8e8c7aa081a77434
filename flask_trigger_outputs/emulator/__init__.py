"""A local emulator of the Trigger.dev API for development and tests."""
