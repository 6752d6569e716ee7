"""`lab verify`: the real products a profile names (Squid, nginx...) run on loopback, as the
ground truth the simulated profile is checked against."""
