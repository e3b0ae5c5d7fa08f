"""Annotations: shapes on a slide in level-0 pixel coordinates, queried by bounding box."""
