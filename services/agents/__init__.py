"""The Agents service: SIP endpoints and their digest credentials."""
