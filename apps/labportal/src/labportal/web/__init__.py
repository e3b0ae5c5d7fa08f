"""Server-rendered pages (Jinja) with a small script that calls the JSON API."""
