"""Inbound webhooks from platforms: POST /hooks/<platform>/<integration id>."""
