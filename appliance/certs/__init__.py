"""Certificates: onboard, imported, CA store, client certificates; TLS contexts."""
