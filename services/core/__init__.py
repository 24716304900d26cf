"""What every service shares: config, errors and their gRPC status, auth, paging, server bootstrap."""
