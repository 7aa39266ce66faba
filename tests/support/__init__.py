"""Helpers shared by Lading's tests: registry servers, a Docker engine, image builders."""
