"""The Calls service: placing calls, live call control, and call history."""
