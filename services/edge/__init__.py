"""The edge: Kamailio in front of voxplane, reading the tables this package owns from voxplane's database."""
