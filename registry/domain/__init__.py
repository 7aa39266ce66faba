"""Pure registry concepts: names, digests, manifests, errors. No I/O."""
