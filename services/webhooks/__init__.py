"""The Webhooks service: signing secrets, webhook settings, endpoints, and the deliveries of events."""
