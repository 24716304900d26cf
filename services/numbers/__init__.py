"""The Numbers service: phone numbers a workspace owns and where their inbound calls go."""
