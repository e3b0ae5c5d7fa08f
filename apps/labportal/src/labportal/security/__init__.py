"""Passwords, secrets, the login rate limit and the authenticated principal."""
