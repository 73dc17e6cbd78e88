"""Image I/O, colour conversion, thermal range mapping and pairing of folders."""
