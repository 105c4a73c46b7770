"""Image I/O, datasets, degradations and host-to-device feeding."""
