"""The voxplane servers: one package per service over a shared core and persistence layer."""
